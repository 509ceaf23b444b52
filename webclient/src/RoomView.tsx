import { FormEvent, KeyboardEvent, useEffect, useLayoutEffect, useRef, useState } from "react";
import {
  EventStatus,
  EventTimeline,
  EventType,
  MatrixClient,
  MatrixEvent,
  MsgType,
  RelationType,
  Room,
} from "matrix-js-sdk";
import type { RoomMessageEventContent } from "matrix-js-sdk/lib/types";
import { Body } from "./Body";
import { failedOnTheNetwork } from "./resend";
import { fullUserId } from "./direct";
import { MediaBody, sendFile, Uploading } from "./media";
import { MessageActions, Reactions, Target } from "./MessageActions";
import { describeError } from "./session";

interface Props {
  client: MatrixClient;
  room: Room;
  onBack: () => void;
}

// Events the timeline shows; everything else (receipts live elsewhere,
// power levels, keys) is left out.
const SHOWN = new Set<string>([
  EventType.RoomMessage,
  EventType.RoomMessageEncrypted, // only while (or if never) decrypted
  EventType.RoomEncryption,
  EventType.RoomMember,
  EventType.RoomCreate,
  EventType.RoomName,
  EventType.RoomTopic,
]);

const TYPING_TIMEOUT_MS = 15_000;
const TYPING_REFRESH_MS = 10_000;
const PAGE = 30;

function canScrollBack(room: Room): boolean {
  const timeline = room.getLiveTimeline();
  const first = timeline.getEvents()[0];
  if (first?.getType() === EventType.RoomCreate) return false;
  return timeline.getPaginationToken(EventTimeline.BACKWARDS) !== null;
}

export function RoomView({ client, room, onBack }: Props) {
  const me = client.getUserId() ?? "";
  const events = room
    .getLiveTimeline()
    .getEvents()
    // an edit shows as its original, changed; not as a message of its own
    .filter((e) => SHOWN.has(e.getType()) && !e.isRelation(RelationType.Replace));
  const pending = room.getPendingEvents().filter((e) => !e.isRelation(RelationType.Replace));
  const [target, setTarget] = useState<Target | null>(null);
  const scroller = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  const keepFrom = useRef<{ height: number; top: number } | null>(null);
  const [loading, setLoading] = useState(false);
  const [more, setMore] = useState(() => canScrollBack(room));

  const loadOlder = async () => {
    if (loading || !canScrollBack(room)) return;
    const el = scroller.current;
    if (el) keepFrom.current = { height: el.scrollHeight, top: el.scrollTop };
    setLoading(true);
    try {
      await client.scrollback(room, PAGE);
    } finally {
      setLoading(false);
      setMore(canScrollBack(room));
    }
  };

  // after each render: keep the reader's place when older messages were
  // put above it, or stay at the bottom when they were there
  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    if (keepFrom.current && !loading) {
      el.scrollTop = el.scrollHeight - keepFrom.current.height + keepFrom.current.top;
      keepFrom.current = null;
    } else if (atBottom.current) {
      el.scrollTop = el.scrollHeight;
    }
  });

  // a short room fills the screen from history before the reader scrolls
  useEffect(() => {
    const el = scroller.current;
    if (el && !loading && more && el.scrollHeight <= el.clientHeight + 50) void loadOlder();
  });

  const onScroll = () => {
    const el = scroller.current;
    if (!el) return;
    atBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 40;
    if (el.scrollTop < 150 && more) void loadOlder();
  };

  useReadReceipts(client, room, events);

  const typing = room
    .getMembers()
    .filter((m) => m.typing && m.userId !== me)
    .map((m) => m.name);

  let lastDay = "";
  const lastOwn = [...events].reverse().find((e) => e.getSender() === me && e.getId());
  return (
    <section className="room-view" aria-label={room.name}>
      <RoomHeader client={client} room={room} onBack={onBack} />
      <div className="timeline" ref={scroller} onScroll={onScroll}>
        {more ? (
          <button type="button" className="link load-older" onClick={loadOlder} disabled={loading}>
            {loading ? "Loading…" : "Load older messages"}
          </button>
        ) : (
          <p className="muted center">This is the start of {room.name}.</p>
        )}
        <div role="log" aria-label="Messages" aria-live="polite">
        <ol className="events">
          {events.map((ev) => {
            const day = new Date(ev.getTs()).toDateString();
            const separator = day !== lastDay;
            lastDay = day;
            return (
              <EventRow
                key={ev.getId() ?? ev.getTxnId()}
                client={client}
                room={room}
                ev={ev}
                day={separator ? day : null}
                isLastOwn={ev === lastOwn}
                onTarget={setTarget}
              />
            );
          })}
          {pending.map((ev) => (
            <EventRow
              key={ev.getTxnId() ?? ev.getId()}
              client={client}
              room={room}
              ev={ev}
              day={null}
              isLastOwn={false}
              onTarget={setTarget}
            />
          ))}
        </ol>
        </div>
      </div>
      <div className="typing" aria-live="polite">
        {typing.length > 0 &&
          `${typing.join(", ")} ${typing.length > 1 ? "are" : "is"} typing…`}
      </div>
      <Composer
        client={client}
        room={room}
        target={target}
        onCancel={() => setTarget(null)}
        onSent={() => {
          atBottom.current = true;
          setTarget(null);
        }}
      />
    </section>
  );
}

/** Our read receipt follows the newest event while the room is on screen. */
function useReadReceipts(client: MatrixClient, room: Room, events: MatrixEvent[]) {
  const last = [...events].reverse().find((e) => e.getId() && !e.getId()!.startsWith("~"));
  const lastId = last?.getId();
  useEffect(() => {
    const send = () => {
      if (!last || document.visibilityState !== "visible") return;
      const me = client.getUserId() ?? "";
      if (last.getSender() === me || room.getEventReadUpTo(me) === lastId) return;
      client.sendReadReceipt(last).catch(() => {
        // the next event or visibility change tries again
      });
    };
    send();
    document.addEventListener("visibilitychange", send);
    return () => document.removeEventListener("visibilitychange", send);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [client, room, lastId]);
}

function RoomHeader({ client, room, onBack }: Props) {
  const [inviting, setInviting] = useState(false);
  const [who, setWho] = useState("");
  const [note, setNote] = useState<string | null>(null);
  const topic = room
    .getLiveTimeline()
    .getState(EventTimeline.FORWARDS)
    ?.getStateEvents(EventType.RoomTopic, "")
    ?.getContent().topic;
  const invite = async (e: FormEvent) => {
    e.preventDefault();
    const userId = fullUserId(client, who);
    try {
      await client.invite(room.roomId, userId);
      setNote(`Invited ${userId}.`);
      setWho("");
      setInviting(false);
    } catch (err) {
      setNote(describeError(err));
    }
  };
  return (
    <header className="bar room-header">
      <button type="button" className="back" aria-label="Back to rooms" onClick={onBack}>
        ‹
      </button>
      <div className="title">
        <h2>{room.name}</h2>
        {room.hasEncryptionStateEvent() && (
          <p className="muted topic" aria-label="End-to-end encrypted">
            End-to-end encrypted
          </p>
        )}
        {typeof topic === "string" && topic && <p className="muted topic">{topic}</p>}
      </div>
      <span className="muted members">
        {room.getJoinedMemberCount()} {room.getJoinedMemberCount() === 1 ? "member" : "members"}
      </span>
      <button type="button" aria-expanded={inviting} onClick={() => setInviting(!inviting)}>
        Invite
      </button>
      {inviting && (
        <form className="invite-form" onSubmit={invite} aria-label="Invite someone">
          <label>
            User to invite
            <input
              value={who}
              placeholder="@name:server"
              autoCapitalize="none"
              onChange={(e) => setWho(e.target.value)}
              required
            />
          </label>
          <button type="submit" className="primary">
            Send invite
          </button>
        </form>
      )}
      {note && (
        <p className="note" role="status">
          {note}
        </p>
      )}
    </header>
  );
}

function timeOf(ts: number): string {
  return new Date(ts).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function memberText(room: Room, ev: MatrixEvent): string | null {
  const c = ev.getContent();
  const prev = ev.getPrevContent();
  const who = c.displayname || ev.getStateKey();
  const by = room.getMember(ev.getSender() ?? "")?.name ?? ev.getSender();
  switch (c.membership) {
    case "join":
      return prev.membership === "join" ? null : `${who} joined`;
    case "invite":
      return `${by} invited ${who}`;
    case "leave":
      return ev.getSender() === ev.getStateKey() ? `${prev.displayname || who} left` : `${by} removed ${prev.displayname || who}`;
    case "ban":
      return `${by} banned ${prev.displayname || who}`;
    default:
      return null;
  }
}

function EventRow({
  client,
  room,
  ev,
  day,
  isLastOwn,
  onTarget,
}: {
  client: MatrixClient;
  room: Room;
  ev: MatrixEvent;
  day: string | null;
  isLastOwn: boolean;
  onTarget: (t: Target) => void;
}) {
  const me = client.getUserId() ?? "";
  const sender = ev.getSender() ?? "";
  const name = room.getMember(sender)?.name ?? sender;
  const separator = day && (
    <li className="day">
      {day}
    </li>
  );
  if (ev.getType() !== EventType.RoomMessage) {
    let text: string | null = null;
    if (ev.getType() === EventType.RoomMember) text = memberText(room, ev);
    else if (ev.getType() === EventType.RoomCreate) text = `${name} created the room`;
    else if (ev.getType() === EventType.RoomName) text = `${name} named the room “${ev.getContent().name ?? ""}”`;
    else if (ev.getType() === EventType.RoomTopic) text = `${name} set the topic`;
    else if (ev.getType() === EventType.RoomEncryption) text = `${name} turned on end-to-end encryption`;
    else if (ev.getType() === EventType.RoomMessageEncrypted) {
      return (
        <>
          {separator}
          <li className="message undecryptable" data-status="sent">
            <div className="meta">
              <span className="sender">{name}</span>
              <time dateTime={new Date(ev.getTs()).toISOString()}>{timeOf(ev.getTs())}</time>
            </div>
            <p className="body muted">
              {ev.isDecryptionFailure() ? "Unable to decrypt this message." : "Decrypting…"}
            </p>
          </li>
        </>
      );
    }
    if (!text) return separator || null;
    return (
      <>
        {separator}
        <li className="notice muted">{text}</li>
      </>
    );
  }
  const mine = sender === me;
  const highlight = !mine && client.getPushActionsForEvent(ev)?.tweaks?.highlight;
  const readers = room
    .getUsersReadUpTo(ev)
    .filter((u) => u !== me && u !== sender)
    .map((u) => room.getMember(u)?.name ?? u);
  const status = ev.status;
  let state: React.ReactNode = null;
  if (status === EventStatus.NOT_SENT) {
    state = (
      <span className="failed" role="alert">
        {failedOnTheNetwork(ev) ? "Not sent yet: offline; will resend." : "Not sent."}{" "}
        <button type="button" className="link" onClick={() => client.resendEvent(ev, room)}>
          Retry
        </button>{" "}
        <button type="button" className="link" onClick={() => client.cancelPendingEvent(ev)}>
          Discard
        </button>
      </span>
    );
  } else if (status !== null) {
    state = <span className="sending">Sending…</span>;
  } else if (readers.length > 0) {
    state = <span className="seen">Seen by {readers.join(", ")}</span>;
  } else if (mine && isLastOwn) {
    state = <span className="sent">Sent</span>;
  }
  return (
    <>
      {separator}
      <li
        className={"message" + (mine ? " mine" : "") + (highlight ? " mention" : "") + (status ? " pending" : "")}
        data-status={status ?? "sent"}
      >
        <div className="meta">
          <span className="sender">{name}</span>
          <time dateTime={new Date(ev.getTs()).toISOString()}>{timeOf(ev.getTs())}</time>
        </div>
        <ReplyQuote room={room} ev={ev} />
        <MediaBody client={client} ev={ev} />
        {!["m.image", "m.video", "m.file"].includes(ev.getContent().msgtype ?? "") && <Body ev={ev} />}
        {ev.replacingEventId() && !ev.isRedacted() && <span className="edited muted">(edited)</span>}
        <Reactions client={client} room={room} ev={ev} />
        <MessageActions client={client} room={room} ev={ev} onTarget={onTarget} />
        {state && <div className="state">{state}</div>}
      </li>
    </>
  );
}

function ReplyQuote({ room, ev }: { room: Room; ev: MatrixEvent }) {
  const parentId = ev.replyEventId;
  if (!parentId) return null;
  const parent = room.findEventById(parentId);
  const who = parent ? room.getMember(parent.getSender() ?? "")?.name ?? parent.getSender() : null;
  const body = parent?.isRedacted() ? "Message deleted" : parent?.getContent().body;
  return (
    <blockquote className="reply-quote">
      {parent ? (
        <>
          In reply to <strong>{who}</strong>: {typeof body === "string" ? body : ""}
        </>
      ) : (
        "In reply to an earlier message"
      )}
    </blockquote>
  );
}

interface ComposerProps {
  client: MatrixClient;
  room: Room;
  target: Target | null;
  onCancel: () => void;
  onSent: () => void;
}

function Composer({ client, room, target, onCancel, onSent }: ComposerProps) {
  const [text, setText] = useState("");
  const typingSince = useRef(0);
  const box = useRef<HTMLTextAreaElement>(null);
  const picker = useRef<HTMLInputElement>(null);
  const [uploads, setUploads] = useState<Uploading[]>([]);

  const attach = (files: FileList | null) => {
    if (room.hasEncryptionStateEvent()) return;
    for (const file of Array.from(files ?? [])) {
      void sendFile(client, room.roomId, file, (u, id) =>
        setUploads((all) => {
          const others = all.filter((x) => x.id !== id);
          return u ? [...others, u] : others;
        }),
      );
    }
    onSent();
  };

  // editing starts from the message's text; both focus the box
  useEffect(() => {
    if (target?.kind === "edit") {
      const body = target.ev.getContent().body;
      setText(typeof body === "string" ? body : "");
    }
    if (target) box.current?.focus();
  }, [target]);

  const setTyping = (on: boolean) => {
    const now = Date.now();
    if (on && now - typingSince.current < TYPING_REFRESH_MS) return;
    if (!on && typingSince.current === 0) return;
    typingSince.current = on ? now : 0;
    client.sendTyping(room.roomId, on, TYPING_TIMEOUT_MS).catch(() => {});
  };

  useEffect(() => () => setTyping(false), []); // eslint-disable-line react-hooks/exhaustive-deps

  const send = () => {
    const body = text.trim();
    if (!body) return;
    setText("");
    setTyping(false);
    onSent();
    // the SDK shows it at once as a local echo (status "sending") and
    // reconciles it with the server's event by transaction ID
    let content: RoomMessageEventContent = { msgtype: MsgType.Text, body };
    if (target?.kind === "edit") {
      content = {
        msgtype: MsgType.Text,
        body: `* ${body}`,
        "m.new_content": { msgtype: MsgType.Text, body },
        "m.relates_to": { rel_type: RelationType.Replace, event_id: target.ev.getId()! },
      };
    } else if (target?.kind === "reply") {
      content = {
        msgtype: MsgType.Text,
        body,
        "m.relates_to": { "m.in_reply_to": { event_id: target.ev.getId()! } },
      };
    }
    client.sendMessage(room.roomId, content).catch(() => {
      // shown as "Not sent" with a retry on the message itself
    });
  };

  const onKey = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === "Escape" && target) {
      e.preventDefault();
      setText("");
      onCancel();
      return;
    }
    if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      send();
    }
  };

  const targetName = target
    ? room.getMember(target.ev.getSender() ?? "")?.name ?? target.ev.getSender()
    : "";
  return (
    <>
    {uploads.map((u) => (
      <div className="upload" key={u.id} role="status">
        <span>{u.error ? `${u.name}: upload failed (${u.error})` : `Uploading ${u.name}`}</span>
        {!u.error && <progress max={u.total || 1} value={u.loaded} aria-label={`Uploading ${u.name}`} />}
        {u.error && (
          <button type="button" className="link" onClick={() => setUploads((all) => all.filter((x) => x.id !== u.id))}>
            Dismiss
          </button>
        )}
      </div>
    ))}
    {target && (
      <div className="composer-target" role="status">
        {target.kind === "edit" ? "Editing your message" : `Replying to ${targetName}`}
        <button
          type="button"
          className="link"
          onClick={() => {
            if (target.kind === "edit") setText("");
            onCancel();
          }}
        >
          Cancel
        </button>
      </div>
    )}
    <form
      className="composer"
      onSubmit={(e) => {
        e.preventDefault();
        send();
      }}
    >
      <input
        ref={picker}
        type="file"
        hidden
        multiple
        aria-label="File to send"
        onChange={(e) => {
          attach(e.target.files);
          e.target.value = "";
        }}
      />
      {/* attachments are not encrypted yet: not offered where messages are */}
      {!room.hasEncryptionStateEvent() && (
        <button type="button" aria-label="Attach a file" onClick={() => picker.current?.click()}>
          +
        </button>
      )}
      <textarea
        ref={box}
        aria-label="Message"
        placeholder={`Message ${room.name}`}
        rows={1}
        value={text}
        onChange={(e) => {
          setText(e.target.value);
          setTyping(e.target.value.trim().length > 0);
        }}
        onKeyDown={onKey}
        onBlur={() => setTyping(false)}
      />
      <button type="submit" className="primary" disabled={!text.trim()}>
        {target?.kind === "edit" ? "Save" : "Send"}
      </button>
    </form>
    </>
  );
}
