// Re-rendering on the SDK's events: its models are mutable, so a component
// reads them during render and asks to be rendered again when they change.
import { useEffect, useState } from "react";
import {
  ClientEvent,
  MatrixClient,
  MatrixEventEvent,
  RoomEvent,
  RoomMemberEvent,
  RoomStateEvent,
  UserEvent,
} from "matrix-js-sdk";

const CLIENT_EVENTS = [
  ClientEvent.Room,
  ClientEvent.DeleteRoom,
  ClientEvent.Sync,
  MatrixEventEvent.Decrypted,
  ClientEvent.AccountData,
  UserEvent.Presence,
];
const ROOM_EVENTS = [
  RoomEvent.Timeline,
  RoomEvent.TimelineReset,
  RoomEvent.LocalEchoUpdated,
  RoomEvent.Receipt,
  RoomEvent.Name,
  RoomEvent.MyMembership,
  RoomEvent.UnreadNotifications,
  RoomEvent.Redaction,
  RoomMemberEvent.Typing,
  RoomMemberEvent.Membership,
  RoomMemberEvent.Name,
  RoomStateEvent.Events,
];

/** A number that changes (once per animation frame at most) whenever the
 * client's rooms, timelines, receipts, typing or sync state change. */
export function useClientVersion(client: MatrixClient): number {
  const [version, setVersion] = useState(0);
  useEffect(() => {
    let frame = 0;
    const bump = () => {
      if (frame) return;
      frame = requestAnimationFrame(() => {
        frame = 0;
        setVersion((v) => v + 1);
      });
    };
    const events = [...CLIENT_EVENTS, ...ROOM_EVENTS] as string[];
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const emitter = client as any;
    for (const name of events) emitter.on(name, bump);
    return () => {
      for (const name of events) emitter.off(name, bump);
      if (frame) cancelAnimationFrame(frame);
    };
  }, [client]);
  return version;
}

/** The room ID in the URL's hash (#/room/!id:server), kept in step with
 * the back button. */
export function useRoute(): [string | null, (roomId: string | null) => void] {
  const read = () => {
    const m = /^#\/room\/(.+)$/.exec(window.location.hash);
    return m ? decodeURIComponent(m[1]) : null;
  };
  const [roomId, setRoomId] = useState<string | null>(read);
  useEffect(() => {
    const onHash = () => setRoomId(read());
    window.addEventListener("hashchange", onHash);
    return () => window.removeEventListener("hashchange", onHash);
  }, []);
  const go = (id: string | null) => {
    window.location.hash = id ? `#/room/${encodeURIComponent(id)}` : "#/";
  };
  return [roomId, go];
}
