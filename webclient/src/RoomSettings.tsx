// Room settings: name, topic and avatar, and the members with their roles
// (from the power levels: admin 100, moderator 50, member the default),
// with kick, ban and a change of role for those whose power allows it.
import { FormEvent, useEffect, useState } from "react";
import {
  EventTimeline,
  EventType,
  KnownMembership,
  MatrixClient,
  Room,
  RoomMember,
} from "matrix-js-sdk";
import { useMediaUrl } from "./media";
import { describeError } from "./session";

const ADMIN = 100;
const MODERATOR = 50;

export function roleName(level: number): string {
  if (level >= ADMIN) return "Admin";
  if (level >= MODERATOR) return "Moderator";
  return "Member";
}

interface PowerLevels {
  users?: Record<string, number>;
  users_default?: number;
  events?: Record<string, number>;
  state_default?: number;
  kick?: number;
  ban?: number;
}

function powerLevels(room: Room): PowerLevels {
  const ev = room
    .getLiveTimeline()
    .getState(EventTimeline.FORWARDS)
    ?.getStateEvents(EventType.RoomPowerLevels, "");
  return (ev?.getContent() as PowerLevels) ?? {};
}

/** Room versions 12 and later give the room's creators (the create event's
 * sender and its additional_creators) a power above any number. */
function creators(room: Room): Set<string> {
  const create = room
    .getLiveTimeline()
    .getState(EventTimeline.FORWARDS)
    ?.getStateEvents(EventType.RoomCreate, "");
  const version = Number(create?.getContent().room_version ?? "1");
  if (!create || !Number.isInteger(version) || version < 12) return new Set();
  const extra = create.getContent().additional_creators;
  return new Set([create.getSender() ?? "", ...(Array.isArray(extra) ? extra : [])]);
}

function levelOf(pl: PowerLevels, userId: string, owners?: Set<string>): number {
  if (owners?.has(userId)) return Infinity;
  const v = pl.users?.[userId];
  return typeof v === "number" ? v : pl.users_default ?? 0;
}

function stateLevel(pl: PowerLevels, type: string): number {
  const v = pl.events?.[type];
  return typeof v === "number" ? v : pl.state_default ?? 50;
}

export function RoomAvatar({ client, room, size }: { client: MatrixClient; room: Room; size: number }) {
  const mxc = room
    .getLiveTimeline()
    .getState(EventTimeline.FORWARDS)
    ?.getStateEvents(EventType.RoomAvatar, "")
    ?.getContent().url;
  const url = useMediaUrl(client, typeof mxc === "string" ? mxc : undefined, true);
  if (!url) return null;
  return (
    <img className="avatar" src={url} alt={`${room.name} avatar`} width={size} height={size} />
  );
}

export function RoomSettings({
  client,
  room,
  onClose,
}: {
  client: MatrixClient;
  room: Room;
  onClose: () => void;
}) {
  const me = client.getUserId() ?? "";
  const pl = powerLevels(room);
  const owners = creators(room);
  const mine = levelOf(pl, me, owners);
  const state = room.getLiveTimeline().getState(EventTimeline.FORWARDS);
  const currentTopic = state?.getStateEvents(EventType.RoomTopic, "")?.getContent().topic;
  const currentName = state?.getStateEvents(EventType.RoomName, "")?.getContent().name;
  const [name, setName] = useState(typeof currentName === "string" ? currentName : "");
  const [topic, setTopic] = useState(typeof currentTopic === "string" ? currentTopic : "");
  const [note, setNote] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [, setLoaded] = useState(false);

  // with lazy-loaded members the list is complete only after this
  useEffect(() => {
    void room.loadMembersIfNeeded().then(() => setLoaded(true)).catch(() => {});
  }, [room]);

  const run = async (what: () => Promise<unknown>, done: string) => {
    setError(null);
    setNote(null);
    try {
      await what();
      setNote(done);
    } catch (e) {
      setError(describeError(e));
    }
  };

  const saveDetails = (e: FormEvent) => {
    e.preventDefault();
    void run(async () => {
      if (name.trim() !== (currentName ?? "")) await client.setRoomName(room.roomId, name.trim());
      if (topic.trim() !== (currentTopic ?? "")) await client.setRoomTopic(room.roomId, topic.trim());
    }, "Saved.");
  };

  const setAvatar = (files: FileList | null) => {
    const file = files?.[0];
    if (!file) return;
    void run(async () => {
      const { content_uri } = await client.uploadContent(file, { type: file.type });
      await client.sendStateEvent(room.roomId, EventType.RoomAvatar, { url: content_uri }, "");
    }, "Avatar changed.");
  };

  const canName = mine >= stateLevel(pl, EventType.RoomName);
  const canTopic = mine >= stateLevel(pl, EventType.RoomTopic);
  const canAvatar = mine >= stateLevel(pl, EventType.RoomAvatar);
  const canRoles = mine >= stateLevel(pl, EventType.RoomPowerLevels);
  const kickLevel = pl.kick ?? 50;
  const banLevel = pl.ban ?? 50;

  const members = room
    .getMembers()
    .filter((m) => m.membership === KnownMembership.Join || m.membership === KnownMembership.Invite)
    .sort((a, b) => levelOf(pl, b.userId, owners) - levelOf(pl, a.userId, owners) || a.name.localeCompare(b.name));
  const banned = room.getMembers().filter((m) => m.membership === KnownMembership.Ban);

  return (
    <section className="settings-panel" aria-label="Room settings">
      <header className="bar">
        <h3 className="grow">Room settings</h3>
        <button type="button" onClick={onClose}>
          Close
        </button>
      </header>
      <div className="settings-body">
        <form className="panel" onSubmit={saveDetails} aria-label="Room details">
          <label>
            Room name
            <input value={name} disabled={!canName} onChange={(e) => setName(e.target.value)} />
          </label>
          <label>
            Room topic
            <input value={topic} disabled={!canTopic} onChange={(e) => setTopic(e.target.value)} />
          </label>
          {(canName || canTopic) && (
            <button type="submit" className="primary">
              Save
            </button>
          )}
          <div className="row avatar-row">
            <RoomAvatar client={client} room={room} size={48} />
            {canAvatar && (
              <label className="file-button">
                Change room avatar
                <input type="file" accept="image/*" onChange={(e) => setAvatar(e.target.files)} />
              </label>
            )}
          </div>
        </form>
        {note && (
          <p className="note pad" role="status">
            {note}
          </p>
        )}
        {error && (
          <p className="error pad" role="alert">
            {error}
          </p>
        )}
        <h4 className="pad">Members</h4>
        <ul className="members-list" aria-label="Members">
          {members.map((m) => (
            <MemberRow
              key={m.userId}
              member={m}
              level={levelOf(pl, m.userId, owners)}
              me={me}
              myLevel={mine}
              canRoles={canRoles}
              canKick={mine >= kickLevel}
              canBan={mine >= banLevel}
              onAction={run}
              client={client}
              room={room}
            />
          ))}
        </ul>
        {banned.length > 0 && (
          <>
            <h4 className="pad">Banned</h4>
            <ul className="members-list" aria-label="Banned">
              {banned.map((m) => (
                <li key={m.userId} className="member">
                  <span className="grow">{m.name}</span>
                  {mine >= banLevel && (
                    <button
                      type="button"
                      aria-label={`Unban ${m.name}`}
                      onClick={() => run(() => client.unban(room.roomId, m.userId), `Unbanned ${m.name}.`)}
                    >
                      Unban
                    </button>
                  )}
                </li>
              ))}
            </ul>
          </>
        )}
      </div>
    </section>
  );
}

function MemberRow({
  client,
  room,
  member,
  level,
  me,
  myLevel,
  canRoles,
  canKick,
  canBan,
  onAction,
}: {
  client: MatrixClient;
  room: Room;
  member: RoomMember;
  level: number;
  me: string;
  myLevel: number;
  canRoles: boolean;
  canKick: boolean;
  canBan: boolean;
  onAction: (what: () => Promise<unknown>, done: string) => Promise<void>;
}) {
  // one may act on those below oneself only (and raise them at most to one's own level)
  const below = member.userId !== me && level < myLevel;
  const role = roleName(level);
  const options = [
    { label: "Admin", level: ADMIN },
    { label: "Moderator", level: MODERATOR },
    { label: "Member", level: 0 },
  ].filter((o) => o.level <= myLevel);
  return (
    <li className="member">
      <span className="grow">
        <span className="member-name">{member.name}</span>{" "}
        <span className="muted member-id">{member.userId}</span>
        {member.membership === KnownMembership.Invite && <span className="muted"> (invited)</span>}
      </span>
      {canRoles && below ? (
        <label className="role">
          <span className="sr-only">Role of {member.name}</span>
          <select
            value={options.some((o) => o.label === role) ? role : "Member"}
            onChange={(e) => {
              const chosen = options.find((o) => o.label === e.target.value);
              if (!chosen) return;
              void onAction(
                () => client.setPowerLevel(room.roomId, member.userId, chosen.level),
                `${member.name} is now ${chosen.label.toLowerCase()}.`,
              );
            }}
          >
            {options.map((o) => (
              <option key={o.label} value={o.label}>
                {o.label}
              </option>
            ))}
          </select>
        </label>
      ) : (
        <span className={"role-badge " + role.toLowerCase()}>{role}</span>
      )}
      {below && canKick && (
        <button
          type="button"
          aria-label={`Remove ${member.name}`}
          onClick={() => {
            if (!window.confirm(`Remove ${member.name} from ${room.name}?`)) return;
            void onAction(() => client.kick(room.roomId, member.userId), `Removed ${member.name}.`);
          }}
        >
          Remove
        </button>
      )}
      {below && canBan && (
        <button
          type="button"
          aria-label={`Ban ${member.name}`}
          onClick={() => {
            if (!window.confirm(`Ban ${member.name} from ${room.name}?`)) return;
            void onAction(() => client.ban(room.roomId, member.userId), `Banned ${member.name}.`);
          }}
        >
          Ban
        </button>
      )}
    </li>
  );
}
