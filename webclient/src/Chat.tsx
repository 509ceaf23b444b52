import { useEffect, useState } from "react";
import { ClientEvent, MatrixClient, SyncState } from "matrix-js-sdk";
import { useClientVersion, useRoute } from "./hooks";
import { RoomList } from "./RoomList";
import { AccountSettings } from "./Account";
import { RoomView } from "./RoomView";
import { useNotifications } from "./notifications";
import { resendUnsent } from "./resend";
import type { WebSocketSync } from "./wsSync";

/** The signed-in screen: the room list and the open room side by side on a
 * wide screen, one at a time on a phone (the open room wins). */
interface Props {
  client: MatrixClient;
  websocket: WebSocketSync | null;
  onSignOut: () => void;
}

export function Chat({ client, websocket, onSignOut }: Props) {
  useClientVersion(client);
  const [roomId, openRoom] = useRoute();
  const [syncState, setSyncState] = useState<SyncState | null>(client.getSyncState());
  useNotifications(client, roomId, openRoom);

  const [online, setOnline] = useState(navigator.onLine);
  const [settings, setSettings] = useState(false);

  useEffect(() => {
    const onSync = (state: SyncState, prev: SyncState | null) => {
      setSyncState(state);
      if (state === SyncState.Syncing && prev !== SyncState.Syncing) void resendUnsent(client);
    };
    // the browser knows of a lost network before a long poll fails; back
    // online, sync resumes from its last token at once, not at the next
    // backoff step
    const onOffline = () => setOnline(false);
    const onOnline = () => {
      setOnline(true);
      client.retryImmediately();
      void resendUnsent(client);
    };
    client.on(ClientEvent.Sync, onSync);
    window.addEventListener("offline", onOffline);
    window.addEventListener("online", onOnline);
    return () => {
      client.off(ClientEvent.Sync, onSync);
      window.removeEventListener("offline", onOffline);
      window.removeEventListener("online", onOnline);
    };
  }, [client]);

  const room = roomId ? client.getRoom(roomId) : null;
  const offline =
    !online || syncState === SyncState.Error || syncState === SyncState.Reconnecting;
  return (
    <div
      className={"chat" + (room || settings ? " has-room" : "")}
      data-transport={websocket?.connected ? "websocket" : "http"}
    >
      {offline && (
        <div className="banner" role="status">
          Connection lost; reconnecting…
        </div>
      )}
      <RoomList
        client={client}
        activeRoomId={roomId}
        onOpen={(id) => {
          setSettings(false);
          openRoom(id);
        }}
        onSignOut={onSignOut}
        onSettings={() => setSettings(true)}
      />
      {settings ? (
        <AccountSettings client={client} onClose={() => setSettings(false)} />
      ) : room ? (
        <RoomView key={room.roomId} client={client} room={room} onBack={() => openRoom(null)} />
      ) : (
        <section className="room-view empty" aria-label="No room open">
          <p className="muted">
            {syncState === null || syncState === SyncState.Stopped
              ? "Loading…"
              : "Pick a room, create one, or join one by its address."}
          </p>
        </section>
      )}
    </div>
  );
}
