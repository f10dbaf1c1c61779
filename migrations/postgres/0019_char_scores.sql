-- Issue 23: an OCR line's per-character probabilities from CTC decoding
-- (the max probability of each kept character, in text order), so that the
-- review page can mark the characters the model was unsure of. JSON array
-- of numbers rounded to 4 decimals, one per character of `text`; only on
-- machine lines. A person's line (corrected or added) has none: its text is
-- the person's, which the machine's scores no longer describe.
ALTER TABLE regions ADD COLUMN char_scores TEXT;
