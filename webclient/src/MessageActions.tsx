// What can be done to a message: react (a short emoji picker), reply, and,
// for one's own, edit and delete; and the reactions under it, as toggles.
import { useState } from "react";
import { EventType, MatrixClient, MatrixEvent, RelationType, Room } from "matrix-js-sdk";

export const PICKER = ["👍", "❤️", "😂", "🎉", "😮", "😢", "🙏", "👀"];

export type Target = { kind: "reply" | "edit"; ev: MatrixEvent };

function myReaction(client: MatrixClient, room: Room, ev: MatrixEvent, key: string): MatrixEvent | undefined {
  const relations = room.relations.getChildEventsForEvent(
    ev.getId() ?? "",
    RelationType.Annotation,
    EventType.Reaction,
  );
  const mine = relations?.getAnnotationsBySender()?.[client.getUserId() ?? ""];
  return [...(mine ?? [])].find((r) => r.getRelation()?.key === key && !r.isRedacted());
}

/** Add our `key` reaction to `ev`, or take it back if it is there. */
export async function toggleReaction(client: MatrixClient, room: Room, ev: MatrixEvent, key: string) {
  const existing = myReaction(client, room, ev, key);
  if (existing?.getId()) {
    await client.redactEvent(room.roomId, existing.getId()!);
    return;
  }
  await client.sendEvent(room.roomId, EventType.Reaction, {
    "m.relates_to": { rel_type: RelationType.Annotation, event_id: ev.getId()!, key },
  });
}

export function Reactions({ client, room, ev }: { client: MatrixClient; room: Room; ev: MatrixEvent }) {
  const id = ev.getId();
  if (!id || id.startsWith("~")) return null;
  const relations = room.relations.getChildEventsForEvent(id, RelationType.Annotation, EventType.Reaction);
  const sorted = relations?.getSortedAnnotationsByKey() ?? [];
  const shown = sorted
    .map(([key, events]) => [key, [...events].filter((e) => !e.isRedacted())] as const)
    .filter(([, events]) => events.length > 0);
  if (shown.length === 0) return null;
  const me = client.getUserId();
  return (
    <div className="reactions" role="group" aria-label="Reactions">
      {shown.map(([key, events]) => {
        const mine = events.some((e) => e.getSender() === me);
        const who = events.map((e) => room.getMember(e.getSender() ?? "")?.name ?? e.getSender());
        return (
          <button
            key={key}
            type="button"
            className={"reaction" + (mine ? " mine" : "")}
            aria-pressed={mine}
            title={who.join(", ")}
            onClick={() => void toggleReaction(client, room, ev, key).catch(() => {})}
          >
            {key} {events.length}
          </button>
        );
      })}
    </div>
  );
}

export function MessageActions({
  client,
  room,
  ev,
  onTarget,
  onThread,
}: {
  client: MatrixClient;
  room: Room;
  ev: MatrixEvent;
  onTarget: (t: Target) => void;
  /** Open the thread rooted at this message (absent: no thread action). */
  onThread?: (rootId: string) => void;
}) {
  const [picking, setPicking] = useState(false);
  const id = ev.getId();
  if (!id || id.startsWith("~") || ev.isRedacted()) return null;
  const mine = ev.getSender() === client.getUserId();
  return (
    <div className="actions-bar">
      <button type="button" className="link" aria-expanded={picking} onClick={() => setPicking(!picking)}>
        React
      </button>
      <button type="button" className="link" onClick={() => onTarget({ kind: "reply", ev })}>
        Reply
      </button>
      {onThread && (
        <button type="button" className="link" onClick={() => onThread(id)}>
          Reply in thread
        </button>
      )}
      {mine && (
        <>
          <button type="button" className="link" onClick={() => onTarget({ kind: "edit", ev })}>
            Edit
          </button>
          <button
            type="button"
            className="link"
            onClick={() => {
              if (window.confirm("Delete this message for everyone?")) {
                void client.redactEvent(room.roomId, id).catch(() => {});
              }
            }}
          >
            Delete
          </button>
        </>
      )}
      {picking && (
        <div className="picker" role="group" aria-label="Pick a reaction">
          {PICKER.map((key) => (
            <button
              key={key}
              type="button"
              aria-label={`React with ${key}`}
              onClick={() => {
                setPicking(false);
                void toggleReaction(client, room, ev, key).catch(() => {});
              }}
            >
              {key}
            </button>
          ))}
        </div>
      )}
    </div>
  );
}
