//! Personal data in text: e-mail addresses, phone numbers (international
//! and national forms), payment card numbers (Luhn) and IBANs (mod 97),
//! each reported with its byte span.
//!
//! Order matters: IBAN-shaped and card-shaped strings are found first, and
//! their spans are masked even when their check digits fail (a string that
//! looks like an IBAN but fails mod 97 is not a phone number either). A
//! phone number has 9 to 15 digits and starts with `+`, `0` or `(`, or is
//! grouped by separators (`415-555-0132`); a bare run of digits not
//! starting with 0 (an order number, an amount) is not one.

use std::sync::OnceLock;

use regex::Regex;
use serde::Serialize;

/// Kinds of personal data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiKind {
    Email,
    Phone,
    Card,
    Iban,
}

impl PiiKind {
    pub fn name(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::Card => "card",
            PiiKind::Iban => "iban",
        }
    }
}

/// One finding: its kind and byte span `[start, end)` in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PiiSpan {
    pub kind: PiiKind,
    pub start: usize,
    pub end: usize,
}

struct Patterns {
    email: Regex,
    iban: Regex,
    card: Regex,
    phone: Regex,
}

fn patterns() -> &'static Patterns {
    static P: OnceLock<Patterns> = OnceLock::new();
    P.get_or_init(|| Patterns {
        email: Regex::new(
            r"(?i)\b[a-z0-9][a-z0-9._%+\-]*@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,}\b",
        )
        .expect("valid e-mail pattern"),
        iban: Regex::new(r"\b[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}\b").expect("valid IBAN pattern"),
        card: Regex::new(r"\b[0-9](?:[ \-]?[0-9]){12,18}\b").expect("valid card pattern"),
        phone: Regex::new(r"(?:\+|\(\s*|\b)[0-9][0-9 \-.()]{6,}[0-9]\b")
            .expect("valid phone pattern"),
    })
}

/// Luhn check of a digit string.
pub fn luhn_valid(digits: &str) -> bool {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return false;
    }
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = (b - b'0') as u32;
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 {
                    d2 - 9
                } else {
                    d2
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// IBAN check: 15 to 34 letters and digits, country letters, check digits,
/// and the rearranged number ≡ 1 (mod 97). Spaces are ignored.
pub fn iban_valid(iban: &str) -> bool {
    let compact: Vec<u8> = iban.bytes().filter(|b| *b != b' ').collect();
    if !(15..=34).contains(&compact.len())
        || !compact[..2].iter().all(u8::is_ascii_uppercase)
        || !compact[2..4].iter().all(u8::is_ascii_digit)
        || !compact
            .iter()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
    {
        return false;
    }
    let mut rem: u32 = 0;
    for &b in compact[4..].iter().chain(&compact[..4]) {
        if b.is_ascii_digit() {
            rem = (rem * 10 + (b - b'0') as u32) % 97;
        } else {
            rem = (rem * 100 + (b - b'A' + 10) as u32) % 97;
        }
    }
    rem == 1
}

/// Three or more groups of four digits, then at most one shorter group:
/// how cards are written.
fn card_shaped(s: &str) -> bool {
    let groups: Vec<&str> = s.split([' ', '-']).collect();
    groups.len() >= 4
        && groups[..groups.len() - 1].iter().all(|g| g.len() == 4)
        && (1..=4).contains(&groups[groups.len() - 1].len())
}

fn overlaps(masked: &[(usize, usize)], s: usize, e: usize) -> bool {
    masked.iter().any(|&(a, b)| s < b && a < e)
}

/// Every finding in `text`, ordered by start.
pub fn scan(text: &str) -> Vec<PiiSpan> {
    let p = patterns();
    let mut out = Vec::new();
    let mut masked: Vec<(usize, usize)> = Vec::new();
    for m in p.email.find_iter(text) {
        out.push(PiiSpan {
            kind: PiiKind::Email,
            start: m.start(),
            end: m.end(),
        });
        masked.push((m.start(), m.end()));
    }
    for m in p.iban.find_iter(text) {
        if overlaps(&masked, m.start(), m.end()) {
            continue;
        }
        // The pattern may run into following upper-case words ("… 32 OK"):
        // the whole match or the match without trailing all-letter words,
        // never a cut inside a group (a cut anywhere would pass mod 97 by
        // chance one time in 97 per cut).
        let s = m.as_str();
        let mut ends = vec![s.len()];
        let mut rest = s;
        while let Some(sp) = rest.rfind(' ') {
            if !rest[sp + 1..].bytes().all(|b| b.is_ascii_uppercase()) {
                break;
            }
            rest = &rest[..sp];
            ends.push(rest.len());
        }
        let valid = ends.iter().find(|&&e| iban_valid(&s[..e]));
        if let Some(&e) = valid {
            out.push(PiiSpan {
                kind: PiiKind::Iban,
                start: m.start(),
                end: m.start() + e,
            });
        }
        masked.push((m.start(), m.end()));
    }
    for m in p.card.find_iter(text) {
        if overlaps(&masked, m.start(), m.end()) {
            continue;
        }
        let digits: String = m.as_str().chars().filter(char::is_ascii_digit).collect();
        if luhn_valid(&digits) {
            out.push(PiiSpan {
                kind: PiiKind::Card,
                start: m.start(),
                end: m.end(),
            });
            masked.push((m.start(), m.end()));
        } else if card_shaped(m.as_str()) {
            // Grouped like a card but failing Luhn: not a phone either.
            masked.push((m.start(), m.end()));
        }
    }
    for m in p.phone.find_iter(text) {
        let s = m.as_str().trim_end();
        let (start, end) = (m.start(), m.start() + s.len());
        if overlaps(&masked, start, end) {
            continue;
        }
        let digits = s.chars().filter(char::is_ascii_digit).count();
        if !(9..=15).contains(&digits) {
            continue;
        }
        let first = s.trim_start_matches(['(', ' ']).chars().next();
        let grouped = s.contains([' ', '-', '.', '(']);
        if s.starts_with('+') || first == Some('0') || (grouped && digits >= 10) {
            out.push(PiiSpan {
                kind: PiiKind::Phone,
                start,
                end,
            });
            masked.push((start, end));
        }
    }
    out.sort_by_key(|s| (s.start, s.end));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(PiiKind, &str)> {
        scan(text)
            .into_iter()
            .map(|s| (s.kind, &text[s.start..s.end]))
            .collect()
    }

    #[test]
    fn luhn_and_mod97() {
        assert!(luhn_valid("4111111111111111"));
        assert!(!luhn_valid("4111111111111112"));
        assert!(luhn_valid("79927398713"));
        assert!(iban_valid("GB82 WEST 1234 5698 7654 32"));
        assert!(iban_valid("DE89370400440532013000"));
        assert!(!iban_valid("GB82 WEST 1234 5698 7654 33"));
        assert!(!iban_valid("gb82west12345698765432"));
    }

    #[test]
    fn each_kind_with_its_span() {
        let t = "Mail jo.smith+x@example.co.uk or call +44 7700 900123, card 4111 1111 1111 1111, IBAN GB82 WEST 1234 5698 7654 32 OK?";
        assert_eq!(
            kinds(t),
            vec![
                (PiiKind::Email, "jo.smith+x@example.co.uk"),
                (PiiKind::Phone, "+44 7700 900123"),
                (PiiKind::Card, "4111 1111 1111 1111"),
                (PiiKind::Iban, "GB82 WEST 1234 5698 7654 32"),
            ]
        );
        assert_eq!(kinds("Call 08712460324 now")[0].0, PiiKind::Phone);
        assert_eq!(kinds("ring (020) 7946 0958 or 415-555-0132").len(), 2);
    }

    #[test]
    fn look_alikes_are_not_flagged() {
        for t in [
            "Text WIN to 87066 for £1000 prize",
            "order 4111 1111 1111 1112 shipped",
            "GB82 WEST 1234 5698 7654 33",
            "on 21/05/2005 at 10.30",
            "me@home",
            "ref 1234567890123",
            "order 3783-6618-8488-266 shipped",
            "ref GB42 PPDI 1359 9147 1368 66",
            "ref FR2677594260071090455941474",
        ] {
            assert!(scan(t).is_empty(), "{t}: {:?}", kinds(t));
        }
    }
}
