-- Placeholder: migration number 0029 is assigned to another branch. The
-- admin-api branch carries this empty file so its own 0031 applies (the
-- loader wants migrations numbered 1..n); the merge keeps the real 0029.
SELECT 1;
