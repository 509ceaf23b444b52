-- Placeholder: migration number 0028 is assigned to another branch. The
-- admin-api branch carries this empty file so its own 0031 applies (the
-- loader wants migrations numbered 1..n); the merge keeps the real 0028.
SELECT 1;
