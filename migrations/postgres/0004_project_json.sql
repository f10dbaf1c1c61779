-- The projects' JSON columns as jsonb, so that they decode straight into the
-- project record (sqlx's `json` attribute requires json/jsonb on PostgreSQL;
-- SQLite keeps them as text). The defaults are dropped and set again around
-- the type change: a text default does not cast to jsonb by itself.
ALTER TABLE projects
    ALTER COLUMN labels TYPE jsonb USING labels::jsonb,
    ALTER COLUMN settings DROP DEFAULT,
    ALTER COLUMN settings TYPE jsonb USING settings::jsonb,
    ALTER COLUMN settings SET DEFAULT '{}'::jsonb,
    ALTER COLUMN committee DROP DEFAULT,
    ALTER COLUMN committee TYPE jsonb USING committee::jsonb,
    ALTER COLUMN committee SET DEFAULT '[]'::jsonb;
