// A message's body. Formatted (HTML) bodies go through DOMPurify with a
// short allow-list: no scripts, no event handlers, no styles, no images
// (they would load from anywhere), links only to http(s) and mailto. The
// server's Content-Security-Policy is the second wall behind it.
import DOMPurify from "dompurify";
import { MatrixEvent } from "matrix-js-sdk";

const ALLOWED_TAGS = [
  "a", "b", "strong", "i", "em", "u", "s", "del", "code", "pre", "blockquote", "p", "br",
  "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "sup", "sub", "hr", "span",
  "table", "thead", "tbody", "tr", "th", "td",
];

let hooked = false;
function purifier(): typeof DOMPurify {
  if (!hooked) {
    DOMPurify.addHook("afterSanitizeAttributes", (node) => {
      if (node.tagName === "A") {
        node.setAttribute("target", "_blank");
        node.setAttribute("rel", "noopener noreferrer nofollow");
      }
    });
    hooked = true;
  }
  return DOMPurify;
}

export function sanitizeHtml(html: string): string {
  return purifier().sanitize(html, {
    ALLOWED_TAGS,
    ALLOWED_ATTR: ["href"],
    ALLOWED_URI_REGEXP: /^(?:https?|mailto):/i,
    ALLOW_DATA_ATTR: false,
  });
}

export function Body({ ev }: { ev: MatrixEvent }) {
  if (ev.isRedacted()) return <p className="body muted">Message deleted</p>;
  const c = ev.getContent();
  if (c.format === "org.matrix.custom.html" && typeof c.formatted_body === "string") {
    return (
      <div className="body" dangerouslySetInnerHTML={{ __html: sanitizeHtml(c.formatted_body) }} />
    );
  }
  const body = typeof c.body === "string" ? c.body : "";
  if (c.msgtype === "m.emote") return <p className="body emote">* {body}</p>;
  return <p className="body">{body}</p>;
}
