// Sign in, sign up and the stored session: the only module that talks to
// the server before a MatrixClient exists.
import {
  createClient,
  MatrixClient,
  MatrixError,
  PendingEventOrdering,
} from "matrix-js-sdk";
import { WEBSOCKET_FEATURE, WebSocketSync } from "./wsSync";

export interface Session {
  baseUrl: string;
  userId: string;
  accessToken: string;
  deviceId: string;
}

const STORAGE_KEY = "homeserver-webclient.session";
const DEVICE_NAME = "Web client";

/** The client is served by the homeserver itself: its API is this origin. */
export function homeserverUrl(): string {
  return window.location.origin;
}

export function loadSession(): Session | null {
  try {
    const raw = window.localStorage.getItem(STORAGE_KEY);
    if (!raw) return null;
    const s = JSON.parse(raw) as Partial<Session>;
    if (s.baseUrl && s.userId && s.accessToken && s.deviceId) return s as Session;
  } catch {
    // unreadable: sign in again
  }
  return null;
}

export function saveSession(s: Session): void {
  window.localStorage.setItem(STORAGE_KEY, JSON.stringify(s));
}

export function clearSession(): void {
  window.localStorage.removeItem(STORAGE_KEY);
}

/** A message for a person from whatever a request threw. */
export function describeError(e: unknown): string {
  if (e instanceof MatrixError) {
    if (e.errcode === "M_FORBIDDEN") return "Wrong user name or password.";
    if (e.errcode === "M_USER_IN_USE") return "That user name is taken.";
    if (e.errcode === "M_LIMIT_EXCEEDED") return "Too many attempts; wait a moment and retry.";
    return e.data?.error || e.message;
  }
  if (e instanceof Error) return e.message;
  return String(e);
}

export async function signIn(user: string, password: string): Promise<Session> {
  const baseUrl = homeserverUrl();
  const anon = createClient({ baseUrl });
  const r = await anon.loginRequest({
    type: "m.login.password",
    identifier: { type: "m.id.user", user: user.trim() },
    password,
    initial_device_display_name: DEVICE_NAME,
  });
  return { baseUrl, userId: r.user_id, accessToken: r.access_token, deviceId: r.device_id };
}

export interface IdentityProvider {
  id: string;
  name: string;
}

/** The identity providers the server offers for single sign-on (the
 * m.login.sso flow of GET /login); none when it offers no SSO. */
export async function identityProviders(): Promise<IdentityProvider[]> {
  const anon = createClient({ baseUrl: homeserverUrl() });
  const { flows } = await anon.loginFlows();
  const idps: IdentityProvider[] = [];
  for (const f of flows) {
    if (f.type !== "m.login.sso") continue;
    const listed = (f as { identity_providers?: { id?: unknown; name?: unknown }[] }).identity_providers;
    for (const p of listed ?? []) {
      if (typeof p.id === "string") idps.push({ id: p.id, name: typeof p.name === "string" ? p.name : p.id });
    }
  }
  return idps;
}

/** Where the browser goes to sign in with `idp`: the server sends it on to
 * the provider and, once signed in there, back here with ?loginToken=. */
export function ssoRedirectUrl(idp: string): string {
  const back = window.location.origin + window.location.pathname;
  return (
    `${homeserverUrl()}/_matrix/client/v3/login/sso/redirect/${encodeURIComponent(idp)}` +
    `?redirectUrl=${encodeURIComponent(back)}`
  );
}

/** The loginToken the server sent the browser back with, taken out of the
 * address (it is good for one use only). */
export function takeLoginToken(): string | null {
  const url = new URL(window.location.href);
  const token = url.searchParams.get("loginToken");
  if (!token) return null;
  url.searchParams.delete("loginToken");
  window.history.replaceState(null, "", url.pathname + url.search + url.hash);
  return token;
}

export async function signInWithToken(token: string): Promise<Session> {
  const baseUrl = homeserverUrl();
  const anon = createClient({ baseUrl });
  const r = await anon.loginRequest({
    type: "m.login.token",
    token,
    initial_device_display_name: DEVICE_NAME,
  });
  return { baseUrl, userId: r.user_id, accessToken: r.access_token, deviceId: r.device_id };
}

interface AuthFlows {
  session?: string;
  flows?: { stages: string[] }[];
}

/** Sign up with a password: the user-interactive auth this client can
 * complete is the dummy stage (servers with open registration). */
export async function signUp(username: string, password: string): Promise<Session> {
  const baseUrl = homeserverUrl();
  const anon = createClient({ baseUrl });
  const body = {
    username: username.trim(),
    password,
    initial_device_display_name: DEVICE_NAME,
  };
  let r;
  try {
    r = await anon.registerRequest(body);
  } catch (e) {
    if (!(e instanceof MatrixError) || e.httpStatus !== 401) throw e;
    const uia = e.data as AuthFlows;
    const flows = uia.flows ?? [];
    if (!flows.some((f) => f.stages.every((s) => s === "m.login.dummy"))) {
      const needs = [...new Set(flows.flatMap((f) => f.stages))].join(", ");
      throw new Error(
        `This server's sign-up asks for steps this client cannot do yet (${needs}).`,
      );
    }
    r = await anon.registerRequest({
      ...body,
      auth: { type: "m.login.dummy", session: uia.session },
    });
  }
  if (!r.access_token || !r.device_id) throw new Error("The server did not sign the new user in.");
  return { baseUrl, userId: r.user_id, accessToken: r.access_token, deviceId: r.device_id };
}

export interface Started {
  client: MatrixClient;
  /** The WebSocket transport, where the server offers it. */
  websocket: WebSocketSync | null;
  /** Whether end-to-end encryption (the SDK's Rust crypto) is running. */
  encryption: boolean;
}

/** The SDK's Rust crypto (WebAssembly, keys in IndexedDB). A store left by
 * another account or device is cleared and made again; a browser without
 * IndexedDB (some private modes) runs without encryption. */
async function startCrypto(client: MatrixClient): Promise<boolean> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await client.initRustCrypto();
      return true;
    } catch (e) {
      console.warn("end-to-end encryption unavailable", e);
      if (attempt === 0) await client.clearStores().catch(() => {});
    }
  }
  return false;
}

/** Whether /versions advertises our WebSocket transport (docs/websocket.md). */
async function serverHasWebSocket(baseUrl: string): Promise<boolean> {
  if (typeof WebSocket === "undefined") return false;
  try {
    const r = await fetch(`${baseUrl}/_matrix/client/versions`);
    const body = await r.json();
    return body?.unstable_features?.[WEBSOCKET_FEATURE] === true;
  } catch {
    return false;
  }
}

export async function startClient(s: Session): Promise<Started> {
  const websocket = (await serverHasWebSocket(s.baseUrl))
    ? new WebSocketSync(s.baseUrl, s.accessToken)
    : null;
  const client = createClient({
    baseUrl: s.baseUrl,
    userId: s.userId,
    accessToken: s.accessToken,
    deviceId: s.deviceId,
    timelineSupport: true,
    // incremental /sync over the WebSocket, plain HTTP for the rest
    fetchFn: websocket?.fetch,
  });
  const encryption = await startCrypto(client);
  await client.startClient({
    initialSyncLimit: 30,
    lazyLoadMembers: true,
    // our own messages wait beside the timeline until the server has them
    // (local echo), where a failed one shows a retry
    pendingEventOrdering: PendingEventOrdering.Detached,
  });
  return { client, websocket, encryption };
}
