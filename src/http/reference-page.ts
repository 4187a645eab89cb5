/**
 * The API reference page at /docs: one static HTML page generated from the OpenAPI document —
 * every path with its methods, summary, whether it needs a bearer token, its parameters and
 * answers. No script, no CDN, no external asset: the page's Content-Security-Policy allows only its
 * own inline stylesheet, by hash (CSP Level 3 §2.3 hash-source), and nothing else.
 */
import { createHash } from 'node:crypto';

const STYLE = `body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}
h1{font-size:1.6rem}h2{font-size:1.05rem;font-family:ui-monospace,monospace;margin:1.6rem 0 .3rem}
.m{display:inline-block;min-width:4.2rem;font-weight:600}.pub{color:#555;font-size:.85rem}
table{border-collapse:collapse;margin:.3rem 0 0 4.2rem}td{padding:.1rem .6rem;vertical-align:top}
code{font-family:ui-monospace,monospace}`;

export const REFERENCE_PAGE_CSP = [
  "default-src 'none'",
  `style-src 'sha256-${createHash('sha256').update(STYLE).digest('base64')}'`,
  "frame-ancestors 'none'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');

interface Operation {
  summary?: string;
  description?: string;
  security?: unknown[];
  parameters?: { name: string; in: string; required?: boolean }[];
  requestBody?: unknown;
  responses?: Record<string, { description?: string }>;
}

interface Document {
  info?: { title?: string; version?: string; description?: string };
  paths?: Record<string, Record<string, Operation>>;
}

function escapeHtml(value: unknown): string {
  return String(value ?? '').replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] as string,
  );
}

export function renderReferencePage(spec: unknown): string {
  const doc = spec as Document;
  const sections: string[] = [];
  for (const [path, methods] of Object.entries(doc.paths ?? {})) {
    for (const [method, op] of Object.entries(methods)) {
      const isPublic = Array.isArray(op.security) && op.security.length === 0;
      const rows = [
        ...(op.parameters ?? []).map(
          (p) =>
            `<tr><td>${escapeHtml(p.in)}</td><td><code>${escapeHtml(p.name)}</code>${p.required ? '' : ' (optional)'}</td></tr>`,
        ),
        ...(op.requestBody ? ['<tr><td>body</td><td>application/json</td></tr>'] : []),
        ...Object.entries(op.responses ?? {}).map(
          ([status, r]) => `<tr><td>${escapeHtml(status)}</td><td>${escapeHtml(r.description)}</td></tr>`,
        ),
      ];
      sections.push(
        `<h2><span class="m">${escapeHtml(method.toUpperCase())}</span>${escapeHtml(path)}</h2>` +
          `<p>${escapeHtml(op.summary)}${isPublic ? ' <span class="pub">(public)</span>' : ''}</p>` +
          (op.description ? `<p>${escapeHtml(op.description)}</p>` : '') +
          `<table>${rows.join('')}</table>`,
      );
    }
  }
  const title = `${escapeHtml(doc.info?.title)} API ${escapeHtml(doc.info?.version)}`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${title}</title><style>${STYLE}</style></head>
<body><h1>${title}</h1><p>${escapeHtml(doc.info?.description)}</p>
<p>Machine-readable: <a href="/v1/openapi.json">/v1/openapi.json</a> (OpenAPI 3.1).</p>
${sections.join('\n')}
</body></html>
`;
}
