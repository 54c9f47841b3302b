// The workflow list: filters by namespace, phase and labels, kept live by the API's watch
// stream (one request; the server sends the current list, then every change).

import { h, fill, stream, errorBox, phaseBadge, ago, duration, enc, PHASES } from '/ui/lib.js';

export function workflowList(r, main) {
  const ns = r.query.get('namespace') || '';
  const phase = r.query.get('phase') || '';
  const labels = r.query.get('labels') || '';
  const rows = new Map();
  const tbody = h('tbody');
  const count = h('span.count');
  const status = h('div.status');
  const controller = new AbortController();

  const go = (next) => {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries({ namespace: ns, phase, labels, ...next })) if (v) q.set(k, v);
    location.hash = `#/workflows?${q}`;
  };
  const nsInput = h('input', { id: 'f-ns', value: ns, placeholder: 'all namespaces', size: 14 });
  const labelInput = h('input', { id: 'f-labels', value: labels, placeholder: 'key=value,…', size: 18 });
  const phaseSelect = h('select', { id: 'f-phase', onchange: (e) => go({ phase: e.target.value }) },
    h('option', { value: '' }, 'any phase'),
    PHASES.map((p) => h('option', { value: p, selected: p === phase }, p)));
  main.append(
    h('div.bar',
      h('h1', 'Workflows'), count,
      h('form.filters', {
        onsubmit: (e) => { e.preventDefault(); go({ namespace: nsInput.value.trim(), labels: labelInput.value.trim() }); },
      },
      h('label', { for: 'f-ns' }, 'Namespace'), nsInput,
      h('label', { for: 'f-phase' }, 'Phase'), phaseSelect,
      h('label', { for: 'f-labels' }, 'Labels'), labelInput,
      h('button', { type: 'submit' }, 'Filter')),
      h('a.button', { href: '#/catalog' }, 'Submit new…')),
    status,
    h('div.scroll', h('table.list', { id: 'workflows' },
      h('thead', h('tr', ['Phase', 'Name', 'Namespace', 'Started', 'Duration', 'Progress', 'Message'].map((c) => h('th', c)))),
      tbody)));

  let pending = false;
  const render = () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      const list = [...rows.values()]
        .filter((w) => !phase || (w.status && w.status.phase) === phase || (phase === 'Pending' && !(w.status && w.status.phase)))
        .sort((a, b) => (b.metadata.creationTimestamp || '').localeCompare(a.metadata.creationTimestamp || '')
          || a.metadata.name.localeCompare(b.metadata.name));
      fill(tbody, ...list.map(row));
      count.textContent = `${list.length} shown`;
      if (!list.length) tbody.append(h('tr', h('td.empty', { colspan: 7 }, rows.size ? 'No workflow matches these filters.' : 'No workflows yet. Submit one from the catalog, or with `onyx submit FILE`.')));
    });
  };

  const q = new URLSearchParams();
  if (labels) q.set('listOptions.labelSelector', labels);
  const path = `/api/v1/workflow-events/${enc(ns)}${q.toString() ? `?${q}` : ''}`;
  const start = () => {
    fill(status, h('span.live', 'live'));
    stream(path, (ev) => {
      const w = ev.object;
      if (!w || !w.metadata) return;
      const key = `${w.metadata.namespace}/${w.metadata.name}`;
      if (ev.type === 'DELETED') rows.delete(key);
      else rows.set(key, w);
      render();
    }, controller.signal).then(() => {
      if (!controller.signal.aborted) fill(status, h('span.stale', 'the server closed the update stream; reload to resume live updates'));
    }, (err) => fill(status, errorBox('Loading workflows', err, start)));
  };
  start();
  render();
  return () => controller.abort();
}

function row(w) {
  const s = w.status || {};
  const href = `#/workflows/${enc(w.metadata.namespace)}/${enc(w.metadata.name)}`;
  return h('tr', { dataset: { name: w.metadata.name, phase: s.phase || 'Pending' } },
    h('td', phaseBadge(s.phase)),
    h('td', h('a', { href }, w.metadata.name)),
    h('td', w.metadata.namespace),
    h('td', { title: s.startedAt || '' }, ago(s.startedAt)),
    h('td', duration(s.startedAt, s.finishedAt)),
    h('td', s.progress || ''),
    h('td.msg', s.message || ''));
}
