// Media in messages: uploads with progress, and images, videos and files
// shown from the authenticated media endpoints (the server serves new media
// only there), fetched with the access token into blob: URLs. Images are the
// server's thumbnails, so an oversized image never reaches the page whole.
import { useEffect, useState } from "react";
import { MatrixClient, MatrixEvent, MsgType } from "matrix-js-sdk";

const THUMB_W = 320;
const THUMB_H = 240;

export function useMediaUrl(client: MatrixClient, mxc: string | undefined, thumbnail: boolean): string | null {
  const [url, setUrl] = useState<string | null>(null);
  useEffect(() => {
    if (!mxc || !mxc.startsWith("mxc://")) return;
    const http = thumbnail
      ? client.mxcUrlToHttp(mxc, THUMB_W, THUMB_H, "scale", false, true, true)
      : client.mxcUrlToHttp(mxc, undefined, undefined, undefined, false, true, true);
    if (!http) return;
    let objectUrl: string | null = null;
    let cancelled = false;
    fetch(http, { headers: { Authorization: `Bearer ${client.getAccessToken()}` } })
      .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(String(r.status)))))
      .then((blob) => {
        if (cancelled) return;
        objectUrl = URL.createObjectURL(blob);
        setUrl(objectUrl);
      })
      .catch(() => {});
    return () => {
      cancelled = true;
      if (objectUrl) URL.revokeObjectURL(objectUrl);
    };
  }, [client, mxc, thumbnail]);
  return url;
}

function sizeText(bytes: unknown): string {
  if (typeof bytes !== "number") return "";
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(0)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** The body of an m.image, m.video or m.file message; null for others. */
export function MediaBody({ client, ev }: { client: MatrixClient; ev: MatrixEvent }) {
  const c = ev.getContent();
  const kind = c.msgtype;
  const isMedia = kind === MsgType.Image || kind === MsgType.Video || kind === MsgType.File;
  const image = useMediaUrl(client, isMedia && kind === MsgType.Image ? c.url : undefined, true);
  const video = useMediaUrl(client, isMedia && kind === MsgType.Video ? c.url : undefined, false);
  if (!isMedia) return null;
  const name = typeof c.body === "string" ? c.body : "file";
  if (typeof c.url !== "string") {
    // an encrypted attachment (content.file) from another client
    return <p className="body muted">{name}: encrypted attachments cannot be shown yet.</p>;
  }
  if (kind === MsgType.Image) {
    return (
      <div className="media">
        {image ? <img src={image} alt={name} className="thumb" /> : <span className="muted">Loading {name}…</span>}
      </div>
    );
  }
  if (kind === MsgType.Video) {
    return (
      <div className="media">
        {video ? <video src={video} controls className="thumb" aria-label={name} /> : <span className="muted">Loading {name}…</span>}
      </div>
    );
  }
  return <FileLink client={client} mxc={c.url} name={name} size={c.info?.size} />;
}

function FileLink({ client, mxc, name, size }: { client: MatrixClient; mxc: string; name: string; size: unknown }) {
  const download = async () => {
    const http = client.mxcUrlToHttp(mxc, undefined, undefined, undefined, false, true, true);
    if (!http) return;
    const r = await fetch(http, { headers: { Authorization: `Bearer ${client.getAccessToken()}` } });
    if (!r.ok) return;
    const url = URL.createObjectURL(await r.blob());
    const a = document.createElement("a");
    a.href = url;
    a.download = name;
    a.click();
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  };
  return (
    <div className="media">
      <button type="button" onClick={() => void download()}>
        Download {name} {sizeText(size) && `(${sizeText(size)})`}
      </button>
    </div>
  );
}

export interface Uploading {
  id: number;
  name: string;
  loaded: number;
  total: number;
  error?: string;
}

async function imageSize(file: File): Promise<{ w: number; h: number } | null> {
  try {
    const bitmap = await createImageBitmap(file);
    const size = { w: bitmap.width, h: bitmap.height };
    bitmap.close();
    return size;
  } catch {
    return null;
  }
}

let nextUpload = 1;

/** Upload `file` (reporting progress) and send it to the room as a message. */
export async function sendFile(
  client: MatrixClient,
  roomId: string,
  file: File,
  progress: (u: Uploading | null, id: number) => void,
): Promise<void> {
  const id = nextUpload++;
  const state: Uploading = { id, name: file.name, loaded: 0, total: file.size };
  progress({ ...state }, id);
  try {
    const { content_uri } = await client.uploadContent(file, {
      name: file.name,
      type: file.type || "application/octet-stream",
      progressHandler: ({ loaded, total }) => progress({ ...state, loaded, total }, id),
    });
    const mimetype = file.type || "application/octet-stream";
    const msgtype = mimetype.startsWith("image/")
      ? MsgType.Image
      : mimetype.startsWith("video/")
        ? MsgType.Video
        : MsgType.File;
    const info: Record<string, unknown> = { mimetype, size: file.size };
    if (msgtype === MsgType.Image) Object.assign(info, await imageSize(file));
    await client.sendMessage(roomId, { msgtype, body: file.name, url: content_uri, info } as never);
    progress(null, id);
  } catch (e) {
    progress({ ...state, error: e instanceof Error ? e.message : String(e) }, id);
  }
}
