-- Placeholder: migration number 0033 is assigned to another branch. The
-- sliding-sync branch carries this empty file so its own 0034 applies (the
-- loader wants migrations numbered 1..n); the merge keeps the real 0033.
SELECT 1;
