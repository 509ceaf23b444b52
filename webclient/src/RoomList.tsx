import { FormEvent, useState } from "react";
import {
  EventType,
  KnownMembership,
  MatrixClient,
  NotificationCountType,
  Preset,
  Room,
  Visibility,
} from "matrix-js-sdk";
import { describeError } from "./session";
import { useSubmit } from "./forms";
import { notificationsSupported } from "./notifications";
import { acceptInvite, directPartner, fullUserId, startDirectChat } from "./direct";
import { NotificationList, useMyProfile } from "./Account";
import { useMediaUrl } from "./media";
import {
  AddToSpace,
  addToSpace,
  isSpace,
  spaceChildren,
  SpaceDirectory,
  SpaceSwitcher,
} from "./Spaces";

interface Props {
  client: MatrixClient;
  activeRoomId: string | null;
  onOpen: (roomId: string) => void;
  onSignOut: () => void;
  onSettings: () => void;
}

/** Rooms by activity, invites first, with unread and mention counts. */
export function RoomList({ client, activeRoomId, onOpen, onSignOut, onSettings }: Props) {
  const [panel, setPanel] = useState<
    "none" | "create" | "join" | "direct" | "search" | "notifications"
  >("none");
  const [spaceId, setSpaceId] = useState<string | null>(null);
  const profile = useMyProfile(client);
  const space = spaceId ? client.getRoom(spaceId) : null;
  const inSpace = space ? spaceChildren(space) : null;
  const rooms = client
    .getRooms()
    .filter((r) => {
      const m = r.getMyMembership();
      if (m !== KnownMembership.Join && m !== KnownMembership.Invite) return false;
      if (isSpace(r) && m === KnownMembership.Join) return false;
      return !inSpace || inSpace.has(r.roomId);
    })
    .sort((a, b) => {
      const ai = a.getMyMembership() === KnownMembership.Invite ? 1 : 0;
      const bi = b.getMyMembership() === KnownMembership.Invite ? 1 : 0;
      if (ai !== bi) return bi - ai;
      return b.getLastActiveTimestamp() - a.getLastActiveTimestamp();
    });

  return (
    <nav className="room-list" aria-label="Rooms">
      <header className="bar">
        <span className="me" title={client.getUserId() ?? ""}>
          <MyAvatar client={client} mxc={profile.avatar} />
          <span className="me-name">{profile.name}</span>
        </span>
        {notificationsSupported() && Notification.permission === "default" && (
          <button type="button" onClick={() => Notification.requestPermission()}>
            Notify me
          </button>
        )}
        <button type="button" onClick={onSettings}>
          Settings
        </button>
        <button type="button" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      <SpaceSwitcher client={client} spaceId={space ? spaceId : null} onPick={setSpaceId} />
      <div className="actions">
        <button
          type="button"
          aria-expanded={panel === "create"}
          onClick={() => setPanel(panel === "create" ? "none" : "create")}
        >
          New room
        </button>
        <button
          type="button"
          aria-expanded={panel === "join"}
          onClick={() => setPanel(panel === "join" ? "none" : "join")}
        >
          Join room
        </button>
        <button
          type="button"
          aria-expanded={panel === "direct"}
          onClick={() => setPanel(panel === "direct" ? "none" : "direct")}
        >
          New chat
        </button>
        <button
          type="button"
          aria-expanded={panel === "search"}
          onClick={() => setPanel(panel === "search" ? "none" : "search")}
        >
          Search
        </button>
        <button
          type="button"
          aria-expanded={panel === "notifications"}
          onClick={() => setPanel(panel === "notifications" ? "none" : "notifications")}
        >
          Notifications
        </button>
      </div>
      {panel === "search" && <Search client={client} onOpen={onOpen} />}
      {panel === "notifications" && <NotificationList client={client} onOpen={onOpen} />}
      {space && <AddToSpace client={client} space={space} />}
      {space && <SpaceDirectory client={client} space={space} onJoined={onOpen} />}
      {panel === "direct" && (
        <DirectChat
          client={client}
          onDone={(id) => {
            setPanel("none");
            onOpen(id);
          }}
        />
      )}
      {panel === "create" && (
        <CreateRoom
          client={client}
          spaceId={space ? space.roomId : null}
          onDone={(id) => {
            setPanel("none");
            onOpen(id);
          }}
        />
      )}
      {panel === "join" && (
        <JoinRoom
          client={client}
          onDone={(id) => {
            setPanel("none");
            onOpen(id);
          }}
        />
      )}
      {rooms.length === 0 && (
        <p className="muted pad">{space ? `No rooms in ${space.name} yet.` : "No rooms yet."}</p>
      )}
      <ul>
        {rooms.map((room) => (
          <RoomItem
            key={room.roomId}
            client={client}
            room={room}
            active={room.roomId === activeRoomId}
            onOpen={onOpen}
          />
        ))}
      </ul>
    </nav>
  );
}

function MyAvatar({ client, mxc }: { client: MatrixClient; mxc: string | undefined }) {
  const url = useMediaUrl(client, mxc, true);
  return url ? <img className="avatar" src={url} alt="" width={28} height={28} /> : null;
}

function lastMessage(room: Room): string {
  const events = room.getLiveTimeline().getEvents();
  for (let i = events.length - 1; i >= 0; i--) {
    const ev = events[i];
    if (ev.getType() === EventType.RoomMessage && !ev.isRedacted()) {
      const sender = room.getMember(ev.getSender() ?? "")?.name ?? ev.getSender();
      const body = ev.getContent().body;
      return typeof body === "string" ? `${sender}: ${body}` : "";
    }
  }
  return "";
}

function RoomItem({
  client,
  room,
  active,
  onOpen,
}: {
  client: MatrixClient;
  room: Room;
  active: boolean;
  onOpen: (roomId: string) => void;
}) {
  const [error, setError] = useState<string | null>(null);
  if (room.getMyMembership() === KnownMembership.Invite) {
    const inviter = room
      .getMember(client.getUserId() ?? "")
      ?.events.member?.getSender();
    return (
      <li className="room-item invite">
        <div className="room-name">{room.name}</div>
        <div className="muted">
          {directPartner(client, room) ? "Direct chat with" : "Invited by"} {inviter ?? "someone"}
        </div>
        <div className="row">
          <button
            type="button"
            className="primary"
            aria-label={`Accept invite to ${room.name}`}
            onClick={async () => {
              try {
                await acceptInvite(client, room);
                onOpen(room.roomId);
              } catch (e) {
                setError(describeError(e));
              }
            }}
          >
            Accept
          </button>
          <button
            type="button"
            aria-label={`Decline invite to ${room.name}`}
            onClick={() => client.leave(room.roomId).catch((e) => setError(describeError(e)))}
          >
            Decline
          </button>
        </div>
        {error && (
          <p role="alert" className="error">
            {error}
          </p>
        )}
      </li>
    );
  }
  const unread = room.getUnreadNotificationCount(NotificationCountType.Total);
  const mentions = room.getUnreadNotificationCount(NotificationCountType.Highlight);
  const partner = directPartner(client, room);
  const presence = partner ? client.getUser(partner)?.presence ?? "offline" : null;
  // the button's name is the room's and its counts ("Tea (2 unread, 1
  // mention)"); the last message is beside it, and the whole row clicks
  return (
    <li className={"room-item" + (active ? " active" : "") + (unread ? " unread" : "")}>
      <button
        type="button"
        className="room-open"
        aria-current={active ? "page" : undefined}
        onClick={() => onOpen(room.roomId)}
      >
        {presence && (
          <span className={"presence " + presence} title={presence} aria-hidden="true" />
        )}
        <span className="room-name">{room.name}</span>
        {presence && <span className="sr-only">{`(${presence === "online" ? "online" : "away or offline"})`}</span>}
        {unread > 0 && (
          <span className="sr-only">
            {`(${unread} unread` + (mentions > 0 ? `, ${mentions} mention${mentions > 1 ? "s" : ""}` : "") + ")"}
          </span>
        )}
        {mentions > 0 ? (
          <span className="badge mention" aria-hidden="true">
            @{mentions}
          </span>
        ) : (
          unread > 0 && (
            <span className="badge" aria-hidden="true">
              {unread}
            </span>
          )
        )}
      </button>
      <span className="room-last muted">{lastMessage(room)}</span>
    </li>
  );
}

interface Hit {
  id: string;
  roomId: string;
  sender: string;
  body: string;
}

/** Server-side search across the rooms one is in (encrypted rooms' messages
 * are not searchable there: the server cannot read them). */
function Search({ client, onOpen }: { client: MatrixClient; onOpen: (id: string) => void }) {
  const [term, setTerm] = useState("");
  const [hits, setHits] = useState<Hit[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    try {
      const r = await client.searchRoomEvents({ term: term.trim() });
      setHits(
        r.results.map((res) => {
          const ev = res.context.getEvent();
          const body = ev.getContent().body;
          return {
            id: ev.getId() ?? "",
            roomId: ev.getRoomId() ?? "",
            sender: ev.getSender() ?? "",
            body: typeof body === "string" ? body : "",
          };
        }),
      );
    } catch (err) {
      setError(describeError(err));
    }
  };
  return (
    <div className="panel">
      <form onSubmit={submit} role="search" aria-label="Search messages">
        <label>
          Search messages
          <input type="search" value={term} onChange={(e) => setTerm(e.target.value)} required />
        </label>
      </form>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      {hits !== null && (
        <ul className="hits" aria-label="Search results">
          {hits.length === 0 && <li className="muted">No messages found.</li>}
          {hits.map((h) => {
            // names as the client knows them now (the first sync may still
            // be on its way when a search is made)
            const room = client.getRoom(h.roomId);
            return (
              <li key={h.id}>
                <button type="button" className="hit" onClick={() => onOpen(h.roomId)}>
                  <span className="hit-room">{room?.name ?? h.roomId}</span>
                  <span className="hit-body">
                    {room?.getMember(h.sender)?.name ?? h.sender}: {h.body}
                  </span>
                </button>
              </li>
            );
          })}
        </ul>
      )}
    </div>
  );
}

function DirectChat({ client, onDone }: { client: MatrixClient; onDone: (id: string) => void }) {
  const [who, setWho] = useState("");
  const [encrypted, setEncrypted] = useState(Boolean(client.getCrypto()));
  const { error, busy, submit } = useSubmit(async () => {
    onDone(await startDirectChat(client, fullUserId(client, who), encrypted));
  });
  return (
    <form className="panel" onSubmit={submit} aria-label="Start a direct chat">
      <label>
        Chat with
        <input
          value={who}
          placeholder="@name:server"
          autoCapitalize="none"
          onChange={(e) => setWho(e.target.value)}
          required
        />
      </label>
      {client.getCrypto() && (
        <label className="check">
          <input type="checkbox" checked={encrypted} onChange={(e) => setEncrypted(e.target.checked)} />
          End-to-end encrypted
        </label>
      )}
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      <button type="submit" className="primary" disabled={busy}>
        Start chat
      </button>
    </form>
  );
}

function CreateRoom({
  client,
  spaceId,
  onDone,
}: {
  client: MatrixClient;
  /** The workspace open: a room made there joins it. */
  spaceId: string | null;
  onDone: (id: string) => void;
}) {
  const [name, setName] = useState("");
  const [topic, setTopic] = useState("");
  const [alias, setAlias] = useState("");
  const [isPublic, setPublic] = useState(false);
  const [encrypted, setEncrypted] = useState(false);
  const { error, busy, submit } = useSubmit(async () => {
    const { room_id } = await client.createRoom({
      name: name.trim() || undefined,
      topic: topic.trim() || undefined,
      room_alias_name: alias.trim().replace(/^#/, "").split(":")[0] || undefined,
      visibility: isPublic ? Visibility.Public : Visibility.Private,
      preset: isPublic ? Preset.PublicChat : Preset.PrivateChat,
      initial_state: encrypted
        ? [
            {
              type: EventType.RoomEncryption,
              state_key: "",
              content: { algorithm: "m.megolm.v1.aes-sha2" },
            },
          ]
        : undefined,
    });
    if (spaceId) await addToSpace(client, spaceId, room_id);
    onDone(room_id);
  });
  return (
    <form className="panel" onSubmit={submit} aria-label="Create a room">
      <label>
        Room name
        <input value={name} onChange={(e) => setName(e.target.value)} required />
      </label>
      <label>
        Topic
        <input value={topic} onChange={(e) => setTopic(e.target.value)} />
      </label>
      <label>
        Address (optional)
        <input
          value={alias}
          placeholder="my-room"
          autoCapitalize="none"
          onChange={(e) => setAlias(e.target.value)}
        />
      </label>
      <label className="check">
        <input type="checkbox" checked={isPublic} onChange={(e) => setPublic(e.target.checked)} />
        Public (in the room directory)
      </label>
      {client.getCrypto() && (
        <label className="check">
          <input
            type="checkbox"
            checked={encrypted}
            onChange={(e) => setEncrypted(e.target.checked)}
          />
          End-to-end encrypted
        </label>
      )}
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      <button type="submit" className="primary" disabled={busy}>
        Create
      </button>
    </form>
  );
}

function JoinRoom({ client, onDone }: { client: MatrixClient; onDone: (id: string) => void }) {
  const [address, setAddress] = useState("");
  const { error, busy, submit } = useSubmit(async () => {
    const room = await client.joinRoom(address.trim());
    onDone(room.roomId);
  });
  return (
    <form className="panel" onSubmit={submit} aria-label="Join a room">
      <label>
        Room address or ID
        <input
          value={address}
          placeholder="#room:server"
          autoCapitalize="none"
          onChange={(e) => setAddress(e.target.value)}
          required
        />
      </label>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      <button type="submit" className="primary" disabled={busy}>
        Join
      </button>
    </form>
  );
}
