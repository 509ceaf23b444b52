import { useEffect, useState } from "react";
import { HttpApiEvent, MatrixClient } from "matrix-js-sdk";
import { Chat } from "./Chat";
import { SignIn } from "./SignIn";
import { clearSession, loadSession, saveSession, Session, Started, startClient } from "./session";

export function App() {
  const [session, setSession] = useState<Session | null>(loadSession);
  const [started, setStarted] = useState<Started | null>(null);
  const client: MatrixClient | null = started?.client ?? null;

  useEffect(() => {
    if (!session) return;
    let cancelled = false;
    let running: Started | null = null;
    const stop = (s: Started) => {
      s.client.stopClient();
      s.websocket?.stop();
    };
    startClient(session).then((s) => {
      if (cancelled) {
        stop(s);
        return;
      }
      running = s;
      setStarted(s);
    });
    return () => {
      cancelled = true;
      if (running) stop(running);
      setStarted(null);
    };
  }, [session]);

  const onSignedIn = (s: Session) => {
    saveSession(s);
    setSession(s);
  };

  const onSignOut = async () => {
    try {
      await client?.logout(true);
    } catch {
      // the token may already be gone: forget it here all the same
    }
    // this device's keys go with it
    await client?.clearStores().catch(() => {});
    clearSession();
    setSession(null);
    window.location.hash = "#/";
  };

  // the server ended the session (signed out elsewhere, token expired)
  useEffect(() => {
    if (!client) return;
    const onLoggedOut = () => {
      client.stopClient();
      void client.clearStores().catch(() => {});
      clearSession();
      setSession(null);
    };
    client.on(HttpApiEvent.SessionLoggedOut, onLoggedOut);
    return () => {
      client.off(HttpApiEvent.SessionLoggedOut, onLoggedOut);
    };
  }, [client]);

  if (!session) return <SignIn onSignedIn={onSignedIn} />;
  if (!client) {
    return (
      <main className="splash" aria-busy="true">
        <p>Connecting…</p>
      </main>
    );
  }
  return <Chat client={client} websocket={started?.websocket ?? null} onSignOut={onSignOut} />;
}
