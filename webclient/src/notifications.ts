// Desktop notifications (the Web Notifications API) for messages the push
// rules say notify about, while this tab is hidden or shows another room.
import { useEffect, useRef } from "react";
import { MatrixClient, MatrixEvent, Room, RoomEvent } from "matrix-js-sdk";

export function notificationsSupported(): boolean {
  return typeof window !== "undefined" && "Notification" in window;
}

export function useNotifications(
  client: MatrixClient,
  activeRoomId: string | null,
  openRoom: (roomId: string) => void,
): void {
  const active = useRef(activeRoomId);
  active.current = activeRoomId;
  const open = useRef(openRoom);
  open.current = openRoom;
  useEffect(() => {
    if (!notificationsSupported()) return;
    const onTimeline = (
      ev: MatrixEvent,
      room: Room | undefined,
      toStart: boolean | undefined,
      removed: boolean,
      data: { liveEvent?: boolean },
    ) => {
      if (!room || toStart || removed || !data.liveEvent) return;
      if (!client.isInitialSyncComplete() || ev.getSender() === client.getUserId()) return;
      if (Notification.permission !== "granted") return;
      if (document.visibilityState === "visible" && active.current === room.roomId) return;
      const actions = client.getPushActionsForEvent(ev);
      if (!actions?.notify) return;
      const sender = room.getMember(ev.getSender() ?? "")?.name ?? ev.getSender();
      const body = ev.getContent().body;
      const n = new Notification(room.name, {
        body: typeof body === "string" ? `${sender}: ${body}`.slice(0, 200) : `${sender}`,
        tag: room.roomId,
      });
      n.onclick = () => {
        window.focus();
        open.current(room.roomId);
        n.close();
      };
    };
    client.on(RoomEvent.Timeline, onTimeline);
    return () => {
      client.off(RoomEvent.Timeline, onTimeline);
    };
  }, [client]);
}
