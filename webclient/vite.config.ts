import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The bundle the homeserver serves at / (homeserver/http/webclient.py): every
// file but index.html and public/ lands under assets/ with a content hash,
// which the server caches as immutable.
export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "dist",
    assetsDir: "assets",
    sourcemap: false,
    target: "es2022",
    chunkSizeWarningLimit: 4096,
  },
  server: {
    // `npm run dev` against a homeserver on the default port
    proxy: {
      "/_matrix": "http://127.0.0.1:8008",
      "/_synapse": "http://127.0.0.1:8008",
      "/.well-known": "http://127.0.0.1:8008",
    },
  },
});
