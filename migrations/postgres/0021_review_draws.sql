-- Issue 26: the randomised review rule (`review_sampling = "proportional"`).
-- When a review list draws an item: the probability that draw had of
-- picking it, the smallest probability any candidate had at that draw, and
-- when it was drawn (ms). NULL for items never drawn by the rule (strict
-- top-k review labels carry no probability and never count as a sample).
ALTER TABLE items ADD COLUMN review_p DOUBLE PRECISION;
ALTER TABLE items ADD COLUMN review_p_min DOUBLE PRECISION;
ALTER TABLE items ADD COLUMN review_drawn_at BIGINT;
