import { useEffect, useState } from "react";
import type { MatrixClient } from "matrix-js-sdk";
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
    clearSession();
    setSession(null);
    window.location.hash = "#/";
  };

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
