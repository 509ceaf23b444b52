-- Placeholder: migration number 0030 is assigned to another branch. The
-- admin-api branch carries this empty file so its own 0031 applies (the
-- loader wants migrations numbered 1..n); the merge keeps the real 0030.
SELECT 1;
