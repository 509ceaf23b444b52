import { useEffect, useState } from "react";
import type { MatrixClient } from "matrix-js-sdk";
import { Chat } from "./Chat";
import { SignIn } from "./SignIn";
import { clearSession, loadSession, saveSession, Session, startClient } from "./session";

export function App() {
  const [session, setSession] = useState<Session | null>(loadSession);
  const [client, setClient] = useState<MatrixClient | null>(null);

  useEffect(() => {
    if (!session) return;
    let cancelled = false;
    let started: MatrixClient | null = null;
    startClient(session).then((c) => {
      if (cancelled) {
        c.stopClient();
        return;
      }
      started = c;
      setClient(c);
    });
    return () => {
      cancelled = true;
      started?.stopClient();
      setClient(null);
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
  return <Chat client={client} onSignOut={onSignOut} />;
}
