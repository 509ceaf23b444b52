import { FormEvent, useEffect, useState } from "react";
import {
  describeError,
  IdentityProvider,
  identityProviders,
  Session,
  signIn,
  signInWithToken,
  signUp,
  ssoRedirectUrl,
  takeLoginToken,
} from "./session";

export function SignIn({ onSignedIn }: { onSignedIn: (s: Session) => void }) {
  const [mode, setMode] = useState<"in" | "up">("in");
  const [user, setUser] = useState("");
  const [password, setPassword] = useState("");
  const [confirm, setConfirm] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [idps, setIdps] = useState<IdentityProvider[]>([]);

  useEffect(() => {
    // back from single sign-on: finish with the login token
    const token = takeLoginToken();
    if (token) {
      setBusy(true);
      signInWithToken(token)
        .then(onSignedIn)
        .catch((err) => {
          setError(`Single sign-on did not finish: ${describeError(err)}`);
          setBusy(false);
        });
    }
    identityProviders()
      .then(setIdps)
      .catch(() => {});
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    if (mode === "up" && password !== confirm) {
      setError("The passwords do not match.");
      return;
    }
    setBusy(true);
    try {
      onSignedIn(mode === "in" ? await signIn(user, password) : await signUp(user, password));
    } catch (err) {
      setError(describeError(err));
      setBusy(false);
    }
  };

  const title = mode === "in" ? "Sign in" : "Create account";
  return (
    <main className="signin">
      <form onSubmit={submit} className="card" aria-labelledby="signin-title">
        <h1 id="signin-title">{title}</h1>
        <p className="muted">on {window.location.host}</p>
        <label>
          User name
          <input
            name="username"
            autoComplete="username"
            autoCapitalize="none"
            required
            value={user}
            onChange={(e) => setUser(e.target.value)}
          />
        </label>
        <label>
          Password
          <input
            name="password"
            type="password"
            autoComplete={mode === "in" ? "current-password" : "new-password"}
            required
            value={password}
            onChange={(e) => setPassword(e.target.value)}
          />
        </label>
        {mode === "up" && (
          <label>
            Confirm password
            <input
              name="confirm"
              type="password"
              autoComplete="new-password"
              required
              value={confirm}
              onChange={(e) => setConfirm(e.target.value)}
            />
          </label>
        )}
        {error && (
          <p role="alert" className="error">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy}>
          {busy ? "Please wait…" : title}
        </button>
        {idps.length > 0 && (
          <div className="sso" role="group" aria-label="Single sign-on">
            <p className="muted">or</p>
            {idps.map((p) => (
              <button
                key={p.id}
                type="button"
                disabled={busy}
                onClick={() => {
                  window.location.href = ssoRedirectUrl(p.id);
                }}
              >
                Continue with {p.name}
              </button>
            ))}
          </div>
        )}
        <button
          type="button"
          className="link"
          onClick={() => {
            setMode(mode === "in" ? "up" : "in");
            setError(null);
          }}
        >
          {mode === "in" ? "No account? Create one" : "Have an account? Sign in"}
        </button>
      </form>
    </main>
  );
}
