// The notification list (GET /notifications: what the push rules said to
// notify about, across rooms) and the account's settings: profile, password
// and the sessions (devices) signed in, with signing another one out.
import { FormEvent, useEffect, useState } from "react";
import { IMyDevice, MatrixClient, MatrixError, Method } from "matrix-js-sdk";
import { useMediaUrl } from "./media";
import { describeError } from "./session";

interface NotificationItem {
  room_id: string;
  read: boolean;
  ts: number;
  actions: unknown[];
  event: { event_id: string; sender: string; type: string; content: { body?: unknown } };
}

function isHighlight(actions: unknown[]): boolean {
  return actions.some(
    (a) =>
      typeof a === "object" &&
      a !== null &&
      (a as { set_tweak?: string; value?: unknown }).set_tweak === "highlight" &&
      (a as { value?: unknown }).value !== false,
  );
}

export function NotificationList({
  client,
  onOpen,
}: {
  client: MatrixClient;
  onOpen: (roomId: string) => void;
}) {
  const [onlyMentions, setOnlyMentions] = useState(true);
  const [items, setItems] = useState<NotificationItem[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let cancelled = false;
    setError(null);
    client.http
      .authedRequest<{ notifications: NotificationItem[] }>(Method.Get, "/notifications", {
        limit: "50",
        ...(onlyMentions ? { only: "highlight" } : {}),
      })
      .then((r) => {
        if (!cancelled) setItems(r.notifications ?? []);
      })
      .catch((e) => {
        if (!cancelled) setError(describeError(e));
      });
    return () => {
      cancelled = true;
    };
  }, [client, onlyMentions]);
  return (
    <div className="panel" aria-label="Notifications" role="region">
      <label className="check">
        <input type="checkbox" checked={onlyMentions} onChange={(e) => setOnlyMentions(e.target.checked)} />
        Mentions only
      </label>
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
      {items !== null && (
        <ul className="hits" aria-label="Notification list">
          {items.length === 0 && <li className="muted">Nothing to show.</li>}
          {items.map((n) => {
            const room = client.getRoom(n.room_id);
            const sender = room?.getMember(n.event.sender)?.name ?? n.event.sender;
            const body = n.event.content?.body;
            return (
              <li key={n.event.event_id}>
                <button
                  type="button"
                  className={"hit" + (n.read ? "" : " unread")}
                  onClick={() => onOpen(n.room_id)}
                >
                  <span className="hit-room">
                    {room?.name ?? n.room_id}
                    {isHighlight(n.actions) ? " · mention" : ""}
                    {n.read ? "" : " · unread"}
                  </span>
                  <span className="hit-body">
                    {sender}: {typeof body === "string" ? body : n.event.type}
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

const PROFILE_CHANGED = "homeserver-webclient.profile-changed";

/** Our own display name and avatar, as the server has them (read again
 * when the settings change them). */
export function useMyProfile(client: MatrixClient): { name: string; avatar?: string } {
  const me = client.getUserId() ?? "";
  const [profile, setProfile] = useState<{ name: string; avatar?: string }>({
    name: client.getUser(me)?.displayName || me,
  });
  useEffect(() => {
    const load = () =>
      client
        .getProfileInfo(me)
        .then((p) =>
          setProfile({
            name: typeof p.displayname === "string" && p.displayname ? p.displayname : me,
            avatar: typeof p.avatar_url === "string" ? p.avatar_url : undefined,
          }),
        )
        .catch(() => {});
    void load();
    window.addEventListener(PROFILE_CHANGED, load);
    return () => window.removeEventListener(PROFILE_CHANGED, load);
  }, [client, me]);
  return profile;
}

/** The password stage of user-interactive auth, for `userId`. */
function passwordAuth(userId: string, password: string, session?: string) {
  return {
    type: "m.login.password",
    identifier: { type: "m.id.user", user: userId },
    password,
    ...(session ? { session } : {}),
  };
}

/** Run a request that may ask for user-interactive auth: first without,
 * then (on 401 with a UIA session) with the password. */
async function withPassword(
  userId: string,
  password: string,
  request: (auth?: Record<string, unknown>) => Promise<unknown>,
): Promise<void> {
  try {
    await request(undefined);
  } catch (e) {
    if (!(e instanceof MatrixError) || e.httpStatus !== 401 || !e.data?.flows) throw e;
    const session = typeof e.data.session === "string" ? e.data.session : undefined;
    await request(passwordAuth(userId, password, session));
  }
}

export function AccountSettings({ client, onClose }: { client: MatrixClient; onClose: () => void }) {
  return (
    <section className="account-settings" aria-label="Settings">
      <header className="bar">
        <h2 className="grow">Settings</h2>
        <button type="button" onClick={onClose}>
          Close settings
        </button>
      </header>
      <div className="settings-body">
        <Profile client={client} />
        <ChangePassword client={client} />
        <Sessions client={client} />
      </div>
    </section>
  );
}

function Profile({ client }: { client: MatrixClient }) {
  const me = client.getUserId() ?? "";
  const user = client.getUser(me);
  const [name, setName] = useState(user?.displayName ?? "");
  const [avatar, setAvatar] = useState<string | undefined>(user?.avatarUrl);
  const [note, setNote] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const avatarUrl = useMediaUrl(client, avatar, true);
  useEffect(() => {
    client
      .getProfileInfo(me)
      .then((p) => {
        if (typeof p.displayname === "string") setName(p.displayname);
        if (typeof p.avatar_url === "string") setAvatar(p.avatar_url);
      })
      .catch(() => {});
  }, [client, me]);
  const save = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    try {
      await client.setDisplayName(name.trim());
      window.dispatchEvent(new Event(PROFILE_CHANGED));
      setNote("Display name saved.");
    } catch (err) {
      setError(describeError(err));
    }
  };
  const upload = async (files: FileList | null) => {
    const file = files?.[0];
    if (!file) return;
    setError(null);
    try {
      const { content_uri } = await client.uploadContent(file, { type: file.type });
      await client.setAvatarUrl(content_uri);
      setAvatar(content_uri);
      window.dispatchEvent(new Event(PROFILE_CHANGED));
      setNote("Avatar changed.");
    } catch (err) {
      setError(describeError(err));
    }
  };
  return (
    <form className="panel" onSubmit={save} aria-label="Profile">
      <h3>Profile</h3>
      <p className="muted">{me}</p>
      <div className="row avatar-row">
        {avatarUrl && <img className="avatar" src={avatarUrl} alt="Your avatar" width={48} height={48} />}
        <label className="file-button">
          Change your avatar
          <input type="file" accept="image/*" onChange={(e) => void upload(e.target.files)} />
        </label>
      </div>
      <label>
        Display name
        <input value={name} onChange={(e) => setName(e.target.value)} />
      </label>
      <button type="submit" className="primary">
        Save name
      </button>
      {note && <p role="status">{note}</p>}
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
    </form>
  );
}

function ChangePassword({ client }: { client: MatrixClient }) {
  const [current, setCurrent] = useState("");
  const [next, setNext] = useState("");
  const [confirm, setConfirm] = useState("");
  const [note, setNote] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setNote(null);
    setError(null);
    if (next !== confirm) {
      setError("The new passwords do not match.");
      return;
    }
    try {
      // other sessions stay signed in (the sessions list below signs them out)
      await client.setPassword(passwordAuth(client.getUserId() ?? "", current), next, false);
      setCurrent("");
      setNext("");
      setConfirm("");
      setNote("Password changed.");
    } catch (err) {
      setError(
        err instanceof MatrixError && err.errcode === "M_FORBIDDEN"
          ? "The current password is wrong."
          : describeError(err),
      );
    }
  };
  return (
    <form className="panel" onSubmit={submit} aria-label="Change password">
      <h3>Password</h3>
      <label>
        Current password
        <input type="password" autoComplete="current-password" value={current} onChange={(e) => setCurrent(e.target.value)} required />
      </label>
      <label>
        New password
        <input type="password" autoComplete="new-password" value={next} onChange={(e) => setNext(e.target.value)} required />
      </label>
      <label>
        Confirm new password
        <input type="password" autoComplete="new-password" value={confirm} onChange={(e) => setConfirm(e.target.value)} required />
      </label>
      <button type="submit" className="primary">
        Change password
      </button>
      {note && <p role="status">{note}</p>}
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
    </form>
  );
}

function Sessions({ client }: { client: MatrixClient }) {
  const [devices, setDevices] = useState<IMyDevice[] | null>(null);
  const [signingOut, setSigningOut] = useState<string | null>(null);
  const [password, setPassword] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [note, setNote] = useState<string | null>(null);
  const reload = () =>
    client
      .getDevices()
      .then((r) => setDevices(r.devices.sort((a, b) => (b.last_seen_ts ?? 0) - (a.last_seen_ts ?? 0))))
      .catch((e) => setError(describeError(e)));
  useEffect(() => {
    void reload();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [client]);
  const mine = client.getDeviceId();
  const signOut = async (e: FormEvent) => {
    e.preventDefault();
    if (!signingOut) return;
    setError(null);
    try {
      await withPassword(client.getUserId() ?? "", password, (auth) =>
        client.deleteDevice(signingOut, auth as never),
      );
      setNote(`Signed out ${signingOut}.`);
      setSigningOut(null);
      setPassword("");
      await reload();
    } catch (err) {
      setError(
        err instanceof MatrixError && err.errcode === "M_FORBIDDEN"
          ? "Wrong password."
          : describeError(err),
      );
    }
  };
  return (
    <div className="panel">
      <h3>Sessions</h3>
      {devices && (
        <ul className="members-list" aria-label="Sessions">
          {devices.map((d) => (
            <li key={d.device_id} className="member">
              <span className="grow">
                <span className="member-name">{d.display_name || d.device_id}</span>{" "}
                <span className="muted member-id">
                  {d.device_id}
                  {d.device_id === mine
                    ? " · this session"
                    : d.last_seen_ts
                      ? ` · last seen ${new Date(d.last_seen_ts).toLocaleString()}`
                      : ""}
                </span>
              </span>
              {d.device_id !== mine && (
                <button
                  type="button"
                  aria-label={`Sign out session ${d.device_id}`}
                  onClick={() => {
                    setSigningOut(d.device_id);
                    setError(null);
                  }}
                >
                  Sign out
                </button>
              )}
            </li>
          ))}
        </ul>
      )}
      {signingOut && (
        <form onSubmit={signOut} aria-label="Confirm signing out" className="panel">
          <label>
            Your password, to sign out {signingOut}
            <input type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required />
          </label>
          <div className="row">
            <button type="submit" className="primary">
              Confirm sign out
            </button>
            <button type="button" onClick={() => setSigningOut(null)}>
              Cancel
            </button>
          </div>
        </form>
      )}
      {note && <p role="status">{note}</p>}
      {error && (
        <p role="alert" className="error">
          {error}
        </p>
      )}
    </div>
  );
}
