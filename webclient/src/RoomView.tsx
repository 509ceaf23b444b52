import { FormEvent, Fragment, KeyboardEvent, useEffect, useLayoutEffect, useRef, useState } from "react";
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
import { RoomAvatar, RoomSettings } from "./RoomSettings";
import { ThreadList, ThreadPanel, ThreadSummary, threadRootOf } from "./Threads";

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

// The timeline is windowed: of the events loaded, at most WINDOW_MAX are in
// the page at once (the newest WINDOW_START when a room opens), so a room
// scrolled far back, or with thousands loaded, stays as light to paint as
// a short one. Scrolling near the window's top shows older loaded events
// (or asks the server for more); near its bottom, newer ones.
const WINDOW_START = 50;
const WINDOW_MAX = 90;
const WINDOW_STEP = 30;
// how far back "Jump to first unread" pages for the read marker
const MARKER_PAGES = 20;

/** The first shown event after our m.fully_read marker, or null when the
 * marker is not among the loaded events or nothing shown follows it. */
function firstUnreadAfter(room: Room, markerId: string | undefined, shown: Set<MatrixEvent>, me: string): string | null {
  if (!markerId) return null;
  const all = room.getLiveTimeline().getEvents();
  const at = all.findIndex((e) => e.getId() === markerId);
  if (at < 0) return null;
  for (let i = at + 1; i < all.length; i++) {
    if (shown.has(all[i]) && all[i].getSender() !== me) return all[i].getId() ?? null;
  }
  return null;
}

/** The loaded events the main timeline shows, oldest first: an edit shows
 * as its original, changed, and a reply in a thread in the thread; neither
 * as a message of its own here. */
function mainEvents(room: Room): MatrixEvent[] {
  return room
    .getLiveTimeline()
    .getEvents()
    .filter(
      (e) => SHOWN.has(e.getType()) && !e.isRelation(RelationType.Replace) && !threadRootOf(e),
    );
}

// markers this client set and the server has not echoed yet (by room):
// reopening a room at once must not show the old line
const markersSent = new Map<string, { from: string | undefined; to: string }>();

function fullyReadMarker(room: Room): string | undefined {
  const id = room.getAccountData(EventType.FullyRead)?.getContent().event_id;
  const stored = typeof id === "string" ? id : undefined;
  const sent = markersSent.get(room.roomId);
  if (sent && sent.from === stored) return sent.to;
  markersSent.delete(room.roomId);
  return stored;
}

export function RoomView({ client, room, onBack }: Props) {
  const me = client.getUserId() ?? "";
  const events = mainEvents(room);
  const pending = room
    .getPendingEvents()
    .filter((e) => !e.isRelation(RelationType.Replace) && !threadRootOf(e));
  const [target, setTarget] = useState<Target | null>(null);
  const [side, setSide] = useState<
    { kind: "thread"; rootId: string } | { kind: "settings" } | { kind: "threads" } | null
  >(null);
  const scroller = useRef<HTMLDivElement>(null);
  const atBottom = useRef(true);
  // "Jump to first unread" waiting for the line to be rendered
  const pendingJump = useRef(false);
  // the row to keep in place across a change of what is rendered above it
  const anchor = useRef<{ key: string; offset: number } | null>(null);
  const [loading, setLoading] = useState(false);
  const [more, setMore] = useState(() => canScrollBack(room));
  // the window: `size` events ending `fromEnd` events before the newest
  const [win, setWin] = useState({ fromEnd: 0, size: WINDOW_START });

  // the read marker as it was when the room was opened: the "New messages"
  // line stays where it was while the reader is here
  const [marker] = useState(() => fullyReadMarker(room));
  const [firstUnread, setFirstUnread] = useState<string | null>(null);
  const [jumped, setJumped] = useState(false);
  // a marker older than everything loaded: there are unread messages above
  const [markerAbove] = useState(
    () =>
      !!marker &&
      !room.getLiveTimeline().getEvents().some((e) => e.getId() === marker) &&
      events.some((e) => e.getSender() !== me && e.getType() === EventType.RoomMessage),
  );
  useEffect(() => {
    if (firstUnread) return;
    const found = firstUnreadAfter(room, marker, new Set(events), me);
    if (found) setFirstUnread(found);
  });

  const end = Math.max(0, events.length - win.fromEnd);
  const begin = Math.max(0, end - win.size);
  const rendered = events.slice(begin, end);

  const keepAnchor = () => {
    const el = scroller.current;
    if (!el) return;
    const top = el.getBoundingClientRect().top;
    for (const row of el.querySelectorAll<HTMLElement>("[data-key]")) {
      const r = row.getBoundingClientRect();
      if (r.bottom > top) {
        anchor.current = { key: row.dataset.key!, offset: r.top - top };
        return;
      }
    }
  };

  // `count` more older events in the window (as many as are loaded), the
  // newest rendered ones dropped beyond its limit
  const showOlder = (count: number) =>
    setWin((w) => {
      const endAt = Math.max(0, mainEvents(room).length - w.fromEnd);
      const wanted = Math.min(endAt, Math.min(w.size, endAt) + count);
      const over = Math.max(0, wanted - WINDOW_MAX);
      return { fromEnd: w.fromEnd + over, size: Math.max(wanted - over, WINDOW_START) };
    });

  const loadOlder = async () => {
    if (loading) return;
    keepAnchor();
    if (begin > 0) {
      // older events are loaded, only not rendered: show them, dropping
      // the newest rendered ones beyond the window's limit
      showOlder(WINDOW_STEP);
      atBottom.current = false;
      return;
    }
    if (!canScrollBack(room)) return;
    setLoading(true);
    try {
      await client.scrollback(room, PAGE);
    } finally {
      setLoading(false);
      setMore(canScrollBack(room));
      keepAnchor();
      showOlder(PAGE);
    }
  };

  const loadNewer = () => {
    if (win.fromEnd === 0) return;
    keepAnchor();
    setWin((w) => ({ fromEnd: Math.max(0, w.fromEnd - WINDOW_STEP), size: w.size }));
  };

  const jumpToLatest = () => {
    anchor.current = null;
    atBottom.current = true;
    setWin({ fromEnd: 0, size: WINDOW_START });
  };

  const jumpToUnread = async () => {
    setJumped(true);
    let id = firstUnread;
    // the marker may be further back than what is loaded
    for (let page = 0; !id && page < MARKER_PAGES && canScrollBack(room); page++) {
      await client.scrollback(room, PAGE);
      const shown = mainEvents(room);
      id = firstUnreadAfter(room, marker, new Set(shown), me);
      if (id) {
        setFirstUnread(id);
        const at = shown.findIndex((e) => e.getId() === id);
        atBottom.current = false;
        anchor.current = null;
        setWin({ fromEnd: Math.max(0, shown.length - at - WINDOW_STEP), size: WINDOW_MAX });
      }
    }
    setMore(canScrollBack(room));
    if (!id) return;
    // no longer following the bottom: a render before the scroll below
    // (a receipt, typing) must not take the reader back down
    atBottom.current = false;
    const at = events.findIndex((e) => e.getId() === id);
    if (at >= 0 && (at < begin || at >= end)) {
      atBottom.current = false;
      anchor.current = null;
      setWin({ fromEnd: Math.max(0, events.length - at - WINDOW_STEP), size: WINDOW_MAX });
    }
    // after the render that puts it in the window (the layout effect
    // below, or the next frames when no render is due)
    pendingJump.current = true;
    requestAnimationFrame(() =>
      requestAnimationFrame(() => {
        const line = scroller.current?.querySelector(".unread-line");
        if (pendingJump.current && line) {
          pendingJump.current = false;
          line.scrollIntoView({ block: "start" });
        }
      }),
    );
  };

  // after each render: keep the reader's place when rows were put above or
  // taken from above it, or stay at the bottom when they were there
  useLayoutEffect(() => {
    const el = scroller.current;
    if (!el) return;
    if (pendingJump.current) {
      const line = el.querySelector(".unread-line");
      if (line) {
        pendingJump.current = false;
        line.scrollIntoView({ block: "start" });
        return;
      }
    }
    const a = anchor.current;
    if (a && !loading) {
      anchor.current = null;
      const row = el.querySelector<HTMLElement>(`[data-key="${CSS.escape(a.key)}"]`);
      if (row) {
        const now = row.getBoundingClientRect().top - el.getBoundingClientRect().top;
        el.scrollTop += now - a.offset;
        return;
      }
    }
    if (atBottom.current && win.fromEnd === 0) el.scrollTop = el.scrollHeight;
  });

  // a short room fills the screen from history before the reader scrolls
  useEffect(() => {
    const el = scroller.current;
    if (el && !loading && more && begin === 0 && el.scrollHeight <= el.clientHeight + 50) {
      void loadOlder();
    }
  });

  const onScroll = () => {
    const el = scroller.current;
    if (!el) return;
    const fromBottom = el.scrollHeight - el.scrollTop - el.clientHeight;
    atBottom.current = fromBottom < 40 && win.fromEnd === 0;
    if (el.scrollTop < 150 && (more || begin > 0)) void loadOlder();
    else if (fromBottom < 150 && win.fromEnd > 0) loadNewer();
  };

  useReadReceipts(client, room, events);
  useFullyRead(client, room, events);

  const typing = room
    .getMembers()
    .filter((m) => m.typing && m.userId !== me)
    .map((m) => m.name);

  let lastDay = "";
  const lastOwn = [...events].reverse().find((e) => e.getSender() === me && e.getId());
  const onThread = (rootId: string) => setSide({ kind: "thread", rootId });
  return (
    <section className="room-view" aria-label={room.name}>
      <RoomHeader
        client={client}
        room={room}
        onBack={onBack}
        onSettings={() => setSide(side?.kind === "settings" ? null : { kind: "settings" })}
        onThreads={() => setSide(side?.kind === "threads" ? null : { kind: "threads" })}
      />
      <div className="room-main">
        <div className="room-column">
          {(firstUnread || markerAbove) && !jumped && (
            <div className="unread-bar" role="status">
              New messages since you were last here.
              <button type="button" className="link" onClick={() => void jumpToUnread()}>
                Jump to first unread
              </button>
            </div>
          )}
          <div className="timeline" ref={scroller} onScroll={onScroll} data-loaded={events.length}>
            {more || begin > 0 ? (
              <button type="button" className="link load-older" onClick={loadOlder} disabled={loading}>
                {loading ? "Loading…" : "Load older messages"}
              </button>
            ) : (
              <p className="muted center">This is the start of {room.name}.</p>
            )}
            <div role="log" aria-label="Messages" aria-live="polite">
              <ol className="events">
                {rendered.map((ev) => {
                  const day = new Date(ev.getTs()).toDateString();
                  const separator = day !== lastDay;
                  lastDay = day;
                  const id = ev.getId() ?? ev.getTxnId() ?? "";
                  return (
                    <Fragment key={id}>
                      {id === firstUnread && (
                        <li className="unread-line" role="separator" aria-label="New messages">
                          New messages
                        </li>
                      )}
                      <EventRow
                        client={client}
                        room={room}
                        ev={ev}
                        rowKey={id}
                        day={separator ? day : null}
                        isLastOwn={ev === lastOwn}
                        onTarget={setTarget}
                        onThread={onThread}
                      />
                    </Fragment>
                  );
                })}
                {win.fromEnd === 0 &&
                  pending.map((ev) => (
                    <EventRow
                      key={ev.getTxnId() ?? ev.getId()}
                      client={client}
                      room={room}
                      ev={ev}
                      rowKey={ev.getTxnId() ?? ev.getId() ?? ""}
                      day={null}
                      isLastOwn={false}
                      onTarget={setTarget}
                      onThread={onThread}
                    />
                  ))}
              </ol>
            </div>
            {win.fromEnd > 0 && (
              <button type="button" className="link load-older" onClick={loadNewer}>
                Show newer messages
              </button>
            )}
          </div>
          {win.fromEnd > 0 && (
            <button type="button" className="jump-latest" onClick={jumpToLatest}>
              Jump to latest
            </button>
          )}
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
              jumpToLatest();
              setTarget(null);
            }}
          />
        </div>
        {side?.kind === "thread" && (
          <ThreadPanel
            key={side.rootId}
            client={client}
            room={room}
            rootId={side.rootId}
            onClose={() => setSide(null)}
          />
        )}
        {side?.kind === "threads" && (
          <ThreadList client={client} room={room} onOpen={onThread} onClose={() => setSide(null)} />
        )}
        {side?.kind === "settings" && (
          <RoomSettings client={client} room={room} onClose={() => setSide(null)} />
        )}
      </div>
    </section>
  );
}

/** Our m.fully_read marker moves to the newest event when we leave the
 * room or the tab (not while we read: the "New messages" line stays put). */
function useFullyRead(client: MatrixClient, room: Room, events: MatrixEvent[]) {
  const newest = useRef<MatrixEvent | undefined>(undefined);
  newest.current = [...events].reverse().find((e) => e.getId() && !e.getId()!.startsWith("~"));
  useEffect(() => {
    const save = () => {
      const ev = newest.current;
      const id = ev?.getId();
      const before = fullyReadMarker(room);
      if (!id || before === id) return;
      const stored = room.getAccountData(EventType.FullyRead)?.getContent().event_id;
      markersSent.set(room.roomId, { from: typeof stored === "string" ? stored : undefined, to: id });
      client.setRoomReadMarkers(room.roomId, id).catch(() => markersSent.delete(room.roomId));
    };
    const onHide = () => {
      if (document.visibilityState === "hidden") save();
    };
    document.addEventListener("visibilitychange", onHide);
    window.addEventListener("pagehide", save);
    return () => {
      document.removeEventListener("visibilitychange", onHide);
      window.removeEventListener("pagehide", save);
      save();
    };
  }, [client, room]);
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

function RoomHeader({
  client,
  room,
  onBack,
  onSettings,
  onThreads,
}: Props & { onSettings: () => void; onThreads: () => void }) {
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
      <RoomAvatar client={client} room={room} size={32} />
      <div className="title">
        <h2>{room.name}</h2>
        {room.hasEncryptionStateEvent() && (
          <p className="muted topic" aria-label="End-to-end encrypted">
            End-to-end encrypted
          </p>
        )}
        {typeof topic === "string" && topic && <p className="muted topic">{topic}</p>}
      </div>
      <span className="muted members wide-only">
        {room.getJoinedMemberCount()} {room.getJoinedMemberCount() === 1 ? "member" : "members"}
      </span>
      <button type="button" aria-expanded={inviting} onClick={() => setInviting(!inviting)}>
        Invite
      </button>
      <button type="button" className="icon" aria-label="Threads" title="Threads" onClick={onThreads}>
        <span aria-hidden="true">☰</span>
        <span className="wide-only"> Threads</span>
      </button>
      <button type="button" className="icon" aria-label="Room settings" title="Room settings" onClick={onSettings}>
        <span aria-hidden="true">⚙</span>
        <span className="wide-only"> Settings</span>
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
  rowKey,
  day,
  isLastOwn,
  onTarget,
  onThread,
}: {
  client: MatrixClient;
  room: Room;
  ev: MatrixEvent;
  rowKey: string;
  day: string | null;
  isLastOwn: boolean;
  onTarget: (t: Target) => void;
  onThread: (rootId: string) => void;
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
          <li className="message undecryptable" data-status="sent" data-key={rowKey}>
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
        <li className="notice muted" data-key={rowKey}>
          {text}
        </li>
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
        data-key={rowKey}
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
        <ThreadSummary room={room} root={ev} onOpen={onThread} />
        <MessageActions client={client} room={room} ev={ev} onTarget={onTarget} onThread={onThread} />
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
