-- Extended profiles (Matrix 1.16, MSC4133): fields beyond the display name
-- and avatar (m.tz, custom namespaced keys), as one JSON object per user.
ALTER TABLE profiles ADD COLUMN fields TEXT;
