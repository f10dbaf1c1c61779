-- Issue 22: a Label Studio box annotation's set, as recorded (JSON: the
-- annotator and the boxes in pixels, each naming the machine region it
-- keeps or corrects), so that deleting the annotation in Label Studio can
-- tell whether the item's human regions are still its set, and restore the
-- latest remaining annotation's set or send the item back to review.
-- NULL for a <Choices> annotation (those live in `annotations`).
ALTER TABLE ls_annotations ADD COLUMN regions TEXT;
