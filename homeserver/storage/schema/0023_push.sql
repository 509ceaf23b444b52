-- Push rules and push actions. Design: the module docstrings of
-- storage/push_rules.py and push/rules.py.

-- A user's own push rules. priority orders the rules of one kind (higher:
-- checked first). conditions and actions are JSON arrays; pattern is set for
-- content rules only.
CREATE TABLE push_rules (
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    priority $BIGINT NOT NULL,
    conditions TEXT NOT NULL,
    pattern TEXT,
    actions TEXT NOT NULL,
    enabled SMALLINT NOT NULL DEFAULT 1,
    PRIMARY KEY (user_id, kind, rule_id)
);

-- What a user changed of a server-default rule: enabled and/or actions
-- (NULL: as the server defines it).
CREATE TABLE push_rules_defaults (
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    enabled SMALLINT,
    actions TEXT,
    PRIMARY KEY (user_id, kind, rule_id)
);

-- A random token changed with every change of the user's rules: the
-- evaluator's cache of compiled rulesets is keyed by (user, version). A user
-- without a row has the server-default rules.
CREATE TABLE push_rules_versions (
    user_id TEXT NOT NULL PRIMARY KEY,
    version TEXT NOT NULL
);

-- The push actions of a timeline event for each local user it notifies,
-- written in the event's persist transaction. thread_id is the thread root's
-- event ID (NULL: the main timeline); actions the JSON array of actions (its
-- tweaks: sound, ...). Counts in /sync, GET /notifications and the pushers
-- read it.
CREATE TABLE event_push_actions (
    event_nid $BIGINT NOT NULL,
    room_nid $BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    stream_ordering $BIGINT NOT NULL,
    notify SMALLINT NOT NULL,
    highlight SMALLINT NOT NULL,
    thread_id TEXT NULL,
    actions TEXT,
    PRIMARY KEY (event_nid, user_id)
);
CREATE INDEX event_push_actions_user ON event_push_actions (user_id, room_nid, stream_ordering);
CREATE INDEX event_push_actions_user_stream ON event_push_actions (user_id, stream_ordering);
