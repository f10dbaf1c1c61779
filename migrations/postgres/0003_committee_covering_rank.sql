-- Ranking indexes, rebuilt to be cheaper to keep and to read:
-- * partial: only items a review list can offer are in them, so ingest
--   (pending) and auto-accepted items cost no ranking-index writes;
-- * covering the lease columns: a review page skips items leased to others
--   from the index alone instead of fetching each leased row (with 25,000
--   live leases that took 30-70 ms per page).
-- The OR form (not IN) is what lets SQLite prove that a query's
-- "status = 'needs_review'" matches the index.
DROP INDEX items_rank_margin;
DROP INDEX items_rank_lc;
DROP INDEX items_rank_entropy;
CREATE INDEX items_rank_margin ON items(project_id, status, unc_margin DESC, review_until, review_owner)
    WHERE status = 'needs_review' OR status = 'needs_confirmation';
CREATE INDEX items_rank_lc ON items(project_id, status, unc_least_confidence DESC, review_until, review_owner)
    WHERE status = 'needs_review' OR status = 'needs_confirmation';
CREATE INDEX items_rank_entropy ON items(project_id, status, unc_entropy DESC, review_until, review_owner)
    WHERE status = 'needs_review' OR status = 'needs_confirmation';

-- Ensemble disagreement: a project may name extra models (its committee);
-- each item then stores how much the members disagree. Only committee
-- projects' items enter these indexes.
ALTER TABLE projects ADD COLUMN committee TEXT NOT NULL DEFAULT '[]';   -- JSON array of model names
ALTER TABLE items ADD COLUMN unc_vote_entropy DOUBLE PRECISION;
ALTER TABLE items ADD COLUMN unc_mean_kl DOUBLE PRECISION;
CREATE INDEX items_rank_vote_entropy ON items(project_id, status, unc_vote_entropy DESC, review_until, review_owner)
    WHERE unc_vote_entropy IS NOT NULL AND (status = 'needs_review' OR status = 'needs_confirmation');
CREATE INDEX items_rank_mean_kl ON items(project_id, status, unc_mean_kl DESC, review_until, review_owner)
    WHERE unc_mean_kl IS NOT NULL AND (status = 'needs_review' OR status = 'needs_confirmation');
