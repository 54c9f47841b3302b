// What every page shares: the API client (token, errors in words), NDJSON streams, a small
// DOM builder, and how phases and times are shown.

const TOKEN_KEY = 'onyx.token';

/** An API failure, with a sentence for the user. */
export class ApiError extends Error {
  constructor(status, message, hint) {
    super(message);
    this.status = status;
    this.hint = hint;
  }
}

function headers(extra) {
  const h = { Accept: 'application/json', ...extra };
  const token = localStorage.getItem(TOKEN_KEY);
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

async function failure(res) {
  let message = `${res.status} ${res.statusText}`;
  try {
    const body = await res.json();
    if (body && body.message) message = body.message;
  } catch (_) { /* not JSON: keep the status line */ }
  const hints = {
    401: 'This server needs you signed in: sign in, or enter a token below (an ID token, or the contents of the server\'s auth_token_file).',
    403: 'Your token does not allow this. Ask an administrator for access to the namespace.',
    404: 'It may have been deleted, or the address is mistyped.',
  };
  return new ApiError(res.status, message, hints[res.status] || '');
}

function unreachable(e) {
  return new ApiError(0, `the ONYX server at ${location.host} did not answer (${e.message})`,
    'Check that `onyx server` is running, then reload the page.');
}

/** One API call; the answer's JSON, or an ApiError. */
export async function call(method, path, body) {
  let res;
  try {
    res = await fetch(path, {
      method,
      headers: headers(body === undefined ? {} : { 'Content-Type': 'application/json' }),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw unreachable(e);
  }
  if (!res.ok) throw await failure(res);
  const text = await res.text();
  return text ? JSON.parse(text) : {};
}

/**
 * Read an NDJSON stream (Argo's watch and log streams), calling `onItem` with each line's
 * `result`. Resolves when the stream ends; `signal` aborts it.
 */
export async function stream(path, onItem, signal) {
  let res;
  try {
    res = await fetch(path, { headers: headers(), signal });
  } catch (e) {
    if (e.name === 'AbortError') return;
    throw unreachable(e);
  }
  if (!res.ok) throw await failure(res);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        const v = JSON.parse(line);
        if (v.error) throw new ApiError(v.error.code || 500, v.error.message || 'stream failed', '');
        onItem(v.result || v);
      }
    }
  } catch (e) {
    if (e.name === 'AbortError') return;
    throw e;
  }
}

// `onyx server` prints a link to `/#token=…` when it made its own token at first start:
// opening that link signs this browser in (the fragment never reaches the server or its logs,
// and is removed from the address bar at once).
if (typeof location !== 'undefined' && location.hash.startsWith('#token=')) {
  localStorage.setItem(TOKEN_KEY, decodeURIComponent(location.hash.slice('#token='.length)));
  history.replaceState(null, '', location.pathname + location.search);
}

export function setToken(token) {
  if (token) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

/** Whether a link target is one the UI may make: in-page (`#…`), this server's (`/…`, `./…`)
 * or http(s). Names come from workflows, a tenant's words: no `javascript:` or `data:` link. */
export function safeUrl(url) {
  return /^(#|\/(?![\/\\])|\.\/|https?:\/\/)/i.test(String(url));
}

/** `h('div.cls', {attrs}, children...)`: a small element builder. Text is always text (never
 * HTML), and `href`/`src` take only what `safeUrl` allows. */
export function h(tag, attrs, ...children) {
  const [name, ...classes] = tag.split('.');
  const el = document.createElement(name || 'div');
  if (classes.length) el.className = classes.join(' ');
  if (attrs !== null && attrs !== undefined && (typeof attrs !== 'object' || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if ((k === 'href' || k === 'src') && !safeUrl(v)) continue;
    else el.setAttribute(k, v === true ? '' : v);
  }
  append(el, children);
  return el;
}

/** Replace an element's children; null, false and nested arrays are handled as `h` does. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** An error box that says what failed and what to do; a 401 also asks for the token. */
export function errorBox(what, err, retry) {
  const box = h('div.error', { role: 'alert' },
    h('strong', `${what} failed: `), err.message,
    err.hint ? h('p', err.hint) : null);
  if (err.status === 401 && err.message.includes('/oauth2/redirect')) {
    // The server signs users in through its OpenID issuer (auth mode sso).
    const back = location.pathname + location.search + location.hash;
    box.append(h('p', h('a.button', { href: `/oauth2/redirect?redirect=${encodeURIComponent(back)}` },
      'Sign in')));
  }
  if (err.status === 401) {
    const input = h('input', { type: 'password', 'aria-label': 'Bearer token', placeholder: 'token' });
    box.append(h('form.inline', {
      onsubmit: (e) => { e.preventDefault(); setToken(input.value.trim()); if (retry) retry(); },
    }, input, h('button', { type: 'submit' }, 'Use token')));
  } else if (retry) {
    box.append(h('p', h('button', { type: 'button', onclick: retry }, 'Try again')));
  }
  return box;
}

export function toast(message, bad) {
  const t = document.getElementById('toast');
  t.textContent = message;
  t.className = bad ? 'show bad' : 'show';
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.className = ''; }, bad ? 8000 : 3000);
}

export const PHASES = ['Pending', 'Running', 'Succeeded', 'Failed', 'Error', 'Skipped', 'Omitted'];

export function phaseBadge(phase) {
  const p = phase || 'Pending';
  return h(`span.phase.p-${p}`, { title: p }, p);
}

/** A namespace's colour on every page: a hue drawn from its name. */
export function hue(s) {
  let x = 0;
  for (const c of s) x = (x * 31 + c.charCodeAt(0)) >>> 0;
  return x % 360;
}

export function ago(iso) {
  if (!iso) return '';
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (s < 60) return `${s}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function duration(start, end) {
  if (!start) return '';
  const s = Math.max(0, Math.round(((end ? Date.parse(end) : Date.now()) - Date.parse(start)) / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

export function enc(s) {
  return encodeURIComponent(s);
}

/** The route's parts and query: `#/workflows/ns/name?node=x`. */
export function route() {
  const [path, query] = location.hash.replace(/^#\/?/, '').split('?');
  return { parts: path.split('/').filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(query || '') };
}

/** Argo's v2 pod name: `<workflow>-<template>-<fnv32a(node name)>`, prefix cut to fit 63. */
export function podName(workflow, node) {
  if (workflow === node.name) return workflow;
  const template = node.templateName || (node.templateRef && node.templateRef.template) || '';
  let prefix = node.name.includes('.inline') || !template ? workflow : `${workflow}-${template}`;
  if (prefix.length > 52) prefix = prefix.slice(0, 52);
  return `${prefix}-${fnv32a(node.name)}`;
}

function fnv32a(s) {
  let hash = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(s)) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}
