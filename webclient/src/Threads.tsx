// Threads (m.thread relations), kept by this client rather than the SDK's
// thread mode: a reply in a thread leaves the main timeline and shows in
// the thread panel; its root shows a summary (reply count, latest reply).
// The panel reads the whole thread from /relations and adds replies as
// they arrive in the room's timeline.
import { KeyboardEvent, useEffect, useState } from "react";
import {
  Direction,
  Method,
  EventType,
  MatrixClient,
  MatrixEvent,
  MsgType,
  Room,
  THREAD_RELATION_TYPE,
} from "matrix-js-sdk";
import type { RoomMessageEventContent } from "matrix-js-sdk/lib/types";
import { Body } from "./Body";

export const THREAD = THREAD_RELATION_TYPE.name;

/** The root's ID for a reply in a thread, else null. */
export function threadRootOf(ev: MatrixEvent): string | null {
  const rel = ev.getWireContent()?.["m.relates_to"];
  return rel?.rel_type === THREAD && typeof rel.event_id === "string" ? rel.event_id : null;
}

/** Replies known from the room's timeline (and pending ones), oldest first. */
function liveReplies(room: Room, rootId: string): MatrixEvent[] {
  const seen =
    room.relations.getChildEventsForEvent(rootId, THREAD, EventType.RoomMessage)?.getRelations() ?? [];
  return [...seen].sort((a, b) => a.getTs() - b.getTs());
}

interface BundledThread {
  count?: number;
  latest_event?: { sender?: string; content?: { body?: unknown } };
}

function bundled(root: MatrixEvent): BundledThread | null {
  const t = root.getUnsigned()?.["m.relations"]?.[THREAD] as BundledThread | undefined;
  return t && typeof t === "object" ? t : null;
}

/** Under a thread's root: "3 replies · bob: latest", which opens the thread. */
export function ThreadSummary({
  room,
  root,
  onOpen,
}: {
  room: Room;
  root: MatrixEvent;
  onOpen: (rootId: string) => void;
}) {
  const id = root.getId();
  if (!id || id.startsWith("~")) return null;
  const live = liveReplies(room, id).filter((e) => !e.isRedacted());
  const server = bundled(root);
  // the server's count was taken when the root reached us; replies seen
  // since are counted by the timeline (never fewer than either)
  const count = Math.max(server?.count ?? 0, live.length);
  if (count === 0) return null;
  const last = live[live.length - 1];
  const lastSender = last ? room.getMember(last.getSender() ?? "")?.name ?? last.getSender() : server?.latest_event?.sender;
  const lastBody = last ? last.getContent().body : server?.latest_event?.content?.body;
  return (
    <button type="button" className="thread-summary link" onClick={() => onOpen(id)}>
      {count} {count === 1 ? "reply" : "replies"}
      {typeof lastBody === "string" && (
        <span className="muted">
          {" "}
          · {lastSender}: {lastBody}
        </span>
      )}
    </button>
  );
}

export function ThreadPanel({
  client,
  room,
  rootId,
  onClose,
}: {
  client: MatrixClient;
  room: Room;
  rootId: string;
  onClose: () => void;
}) {
  const [fetched, setFetched] = useState<MatrixEvent[]>([]);
  const [root, setRoot] = useState<MatrixEvent | null>(room.findEventById(rootId) ?? null);
  const [text, setText] = useState("");

  useEffect(() => {
    let cancelled = false;
    (async () => {
      const all: MatrixEvent[] = [];
      let from: string | null | undefined = undefined;
      // the whole thread, a page at a time (a thread of thousands is rare)
      for (let page = 0; page < 20; page++) {
        const r = await client.relations(room.roomId, rootId, THREAD, null, {
          dir: Direction.Forward,
          from: from ?? undefined,
          limit: 100,
        });
        if (r.originalEvent && !root) setRoot(r.originalEvent);
        all.push(...r.events);
        from = r.nextBatch;
        if (!from) break;
      }
      if (!cancelled) setFetched(all);
    })().catch(() => {});
    return () => {
      cancelled = true;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [client, room, rootId]);

  const byId = new Map<string, MatrixEvent>();
  // the timeline's copies win: the SDK keeps them up to date (redactions)
  for (const e of [...fetched, ...liveReplies(room, rootId)]) byId.set(e.getId() ?? "", e);
  const pending = room.getPendingEvents().filter((e) => threadRootOf(e) === rootId);
  const replies = [...byId.values()]
    .filter((e) => e.getType() === EventType.RoomMessage)
    .sort((a, b) => a.getTs() - b.getTs());
  const shown = [...replies, ...pending.filter((p) => !replies.includes(p))];

  const send = () => {
    const body = text.trim();
    if (!body) return;
    setText("");
    const last = replies[replies.length - 1];
    const content: RoomMessageEventContent = {
      msgtype: MsgType.Text,
      body,
      "m.relates_to": {
        rel_type: THREAD,
        event_id: rootId,
        // clients without threads show it as a reply to the latest message
        is_falling_back: true,
        "m.in_reply_to": { event_id: last?.getId() ?? rootId },
      },
    } as RoomMessageEventContent;
    client.sendMessage(room.roomId, content).catch(() => {});
  };

  const onKey = (e: KeyboardEvent<HTMLTextAreaElement>) => {
    if (e.key === "Escape") {
      e.preventDefault();
      onClose();
    } else if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
      e.preventDefault();
      send();
    }
  };

  const nameOf = (e: MatrixEvent) => room.getMember(e.getSender() ?? "")?.name ?? e.getSender();
  return (
    <section className="thread-panel" aria-label="Thread">
      <header className="bar">
        <h3 className="grow">Thread</h3>
        <button type="button" onClick={onClose}>
          Close thread
        </button>
      </header>
      <div className="thread-body">
        {root && (
          <div className="message thread-root">
            <div className="meta">
              <span className="sender">{nameOf(root)}</span>
            </div>
            <Body ev={root} />
          </div>
        )}
        <ol className="events" aria-label="Thread replies">
          {shown.map((e) => (
            <li
              key={e.getId() ?? e.getTxnId()}
              className={"message" + (e.getSender() === client.getUserId() ? " mine" : "")}
              data-status={e.status ?? "sent"}
            >
              <div className="meta">
                <span className="sender">{nameOf(e)}</span>
              </div>
              <Body ev={e} />
              {e.status === "not_sent" && (
                <span className="failed" role="alert">
                  Not sent.{" "}
                  <button type="button" className="link" onClick={() => client.resendEvent(e, room)}>
                    Retry
                  </button>
                </span>
              )}
            </li>
          ))}
        </ol>
      </div>
      <form
        className="composer"
        onSubmit={(e) => {
          e.preventDefault();
          send();
        }}
      >
        <textarea
          aria-label="Reply in thread"
          placeholder="Reply in thread"
          rows={1}
          value={text}
          onChange={(e) => setText(e.target.value)}
          onKeyDown={onKey}
        />
        <button type="submit" className="primary" disabled={!text.trim()}>
          Send
        </button>
      </form>
    </section>
  );
}

interface ThreadRoot {
  event_id: string;
  sender: string;
  content: { body?: unknown };
  unsigned?: { "m.relations"?: Record<string, BundledThread> };
}

/** The room's threads (GET /rooms/{id}/threads: the roots, most recently
 * active first), each opening its thread. */
export function ThreadList({
  client,
  room,
  onOpen,
  onClose,
}: {
  client: MatrixClient;
  room: Room;
  onOpen: (rootId: string) => void;
  onClose: () => void;
}) {
  const [roots, setRoots] = useState<ThreadRoot[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  useEffect(() => {
    let cancelled = false;
    client.http
      .authedRequest<{ chunk: ThreadRoot[] }>(
        Method.Get,
        `/rooms/${encodeURIComponent(room.roomId)}/threads`,
        { limit: "50" },
        undefined,
        { prefix: "/_matrix/client/v1" },
      )
      .then((r) => {
        if (!cancelled) setRoots(r.chunk ?? []);
      })
      .catch((e) => {
        if (!cancelled) setError(e instanceof Error ? e.message : String(e));
      });
    return () => {
      cancelled = true;
    };
  }, [client, room]);
  return (
    <section className="thread-panel" aria-label="Threads">
      <header className="bar">
        <h3 className="grow">Threads</h3>
        <button type="button" onClick={onClose}>
          Close threads
        </button>
      </header>
      <div className="thread-body">
        {error && (
          <p role="alert" className="error">
            {error}
          </p>
        )}
        {roots && (
          <ul className="hits" aria-label="Threads of this room">
            {roots.length === 0 && <li className="muted">No threads yet.</li>}
            {roots.map((r) => {
              const live = liveReplies(room, r.event_id).filter((e) => !e.isRedacted()).length;
              const count = Math.max(r.unsigned?.["m.relations"]?.[THREAD]?.count ?? 0, live);
              const body = r.content?.body;
              return (
                <li key={r.event_id}>
                  <button type="button" className="hit" onClick={() => onOpen(r.event_id)}>
                    <span className="hit-body">
                      {room.getMember(r.sender)?.name ?? r.sender}: {typeof body === "string" ? body : ""}
                    </span>
                    <span className="hit-room">
                      {count} {count === 1 ? "reply" : "replies"}
                    </span>
                  </button>
                </li>
              );
            })}
          </ul>
        )}
      </div>
    </section>
  );
}
