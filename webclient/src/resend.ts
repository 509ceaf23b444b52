// Messages written while the network was gone: the SDK marks them "not
// sent" at the first failed request. When the connection is back they are
// sent again, oldest first, under their original transaction IDs, so the
// server stores each once even if a first try did reach it. A message the
// server refused (an HTTP error) waits for the person's Retry instead.
import { EventStatus, MatrixClient, MatrixError, MatrixEvent } from "matrix-js-sdk";

export function failedOnTheNetwork(ev: MatrixEvent): boolean {
  return ev.status === EventStatus.NOT_SENT && !(ev.error instanceof MatrixError && ev.error.httpStatus);
}

let running = false;

export async function resendUnsent(client: MatrixClient): Promise<void> {
  if (running) return;
  running = true;
  try {
    for (const room of client.getRooms()) {
      for (const ev of [...room.getPendingEvents()]) {
        if (!failedOnTheNetwork(ev)) continue;
        try {
          await client.resendEvent(ev, room);
        } catch {
          return; // still offline: the next reconnection tries again
        }
      }
    }
  } finally {
    running = false;
  }
}
