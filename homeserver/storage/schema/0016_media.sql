-- The media repository (design: the module docstring of media/repository.py).
-- Files live in a storage provider (local disk by default); these tables say
-- what each file is.

-- Media uploaded here. A row with uploaded_ts NULL is a media ID handed out
-- by /_matrix/media/v1/create and not uploaded yet; it is void after
-- expires_ts. authenticated = 1: uploaded while enable_authenticated_media was
-- on, so the legacy unauthenticated endpoints do not serve it.
CREATE TABLE local_media (
    media_id TEXT NOT NULL PRIMARY KEY,
    user_id TEXT NOT NULL,
    created_ts $BIGINT NOT NULL,
    expires_ts $BIGINT,
    uploaded_ts $BIGINT,
    media_type TEXT,
    media_length $BIGINT,
    upload_name TEXT,
    authenticated SMALLINT NOT NULL DEFAULT 0
);
CREATE INDEX local_media_pending ON local_media (user_id, uploaded_ts);

-- Media of other servers, fetched over federation and kept here.
CREATE TABLE remote_media (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    created_ts $BIGINT NOT NULL,
    media_type TEXT NOT NULL,
    media_length $BIGINT NOT NULL,
    upload_name TEXT,
    file_id TEXT NOT NULL,
    authenticated SMALLINT NOT NULL DEFAULT 0,
    PRIMARY KEY (origin, media_id)
);

-- Thumbnails of local (origin '') and cached remote media.
CREATE TABLE media_thumbnails (
    origin TEXT NOT NULL,
    media_id TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    method TEXT NOT NULL,
    media_type TEXT NOT NULL,
    media_length $BIGINT NOT NULL,
    PRIMARY KEY (origin, media_id, width, height, method, media_type)
);
