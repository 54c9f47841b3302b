// The workflow archive: finished workflows kept after their live object is gone.

import { h, fill, call, errorBox, phaseBadge, ago, duration, enc, toast } from '/ui/lib.js';

export function archivePage(r, main) {
  const tbody = h('tbody');
  main.append(h('div.bar', h('h1', 'Archived workflows')),
    h('div.scroll', h('table.list', { id: 'archive' },
      h('thead', h('tr', ['Phase', 'Name', 'Namespace', 'Started', 'Duration', ''].map((c) => h('th', c)))), tbody)));
  const load = () => call('GET', '/api/v1/archived-workflows').then((list) => {
    const items = list.items || [];
    fill(tbody, ...items.map((w) => {
      const s = w.status || {};
      const uid = w.metadata.uid;
      const again = async (verb) => {
        try {
          const out = await call('PUT', `/api/v1/archived-workflows/${enc(uid)}/${verb}`, { namespace: w.metadata.namespace });
          toast(`${verb === 'retry' ? 'Retried' : 'Resubmitted'} as ${out.metadata.name}.`);
          location.hash = `#/workflows/${enc(out.metadata.namespace)}/${enc(out.metadata.name)}`;
        } catch (err) { toast(`${verb} failed: ${err.message}`, true); }
      };
      return h('tr', h('td', phaseBadge(s.phase)), h('td', h('a', { href: `#/archive/${enc(uid)}` }, w.metadata.name)), h('td', w.metadata.namespace),
        h('td', { title: s.startedAt || '' }, ago(s.startedAt)), h('td', duration(s.startedAt, s.finishedAt)),
        h('td', h('button', { type: 'button', onclick: () => again('resubmit') }, 'Resubmit'),
          ['Failed', 'Error'].includes(s.phase) ? h('button', { type: 'button', onclick: () => again('retry') }, 'Retry') : null));
    }));
    if (!items.length) tbody.append(h('tr', h('td.empty', { colspan: 6 }, 'The archive is empty: finished workflows are archived when they are deleted or their TTL ends.')));
  }, (err) => fill(tbody, h('tr', h('td', { colspan: 6 }, errorBox('Listing the archive', err, load)))));
  load();
}
