// The cluster: every node with its GPUs drawn as GPUs — whole, split into MIG instances
// (each as wide as its compute slices, with its profile and holder), shared by fractions, or
// idle — its cordon state and taints; the queues with what they may, deserve and hold, and
// what waits in each and why (the scheduler's own reasons); and GPUs held per namespace
// against its quota.
// It refreshes when a workflow changes (the watch stream), not on a timer.

import { h, fill, hue, call, stream, errorBox } from '/ui/lib.js';

function slices(profile) {
  const m = /^(\d+)g/.exec(profile || '');
  return m ? Number(m[1]) : 1;
}

function holderStyle(holder) {
  return `--ns-hue:${hue(holder.namespace)}`;
}

function holderText(holder) {
  return `${holder.pod}\nnamespace ${holder.namespace} · queue ${holder.queue}${holder.gang ? ` · gang ${holder.gang}` : ''}${holder.gpuMilli ? ` · ${holder.gpuMilli / 10}% of the GPU` : ''}`;
}

/** `1g.10gb ×7`, or `3g.40gb + 2×2g.20gb` for a mixed layout. */
function migSummary(instances) {
  const counts = new Map();
  for (const i of instances) counts.set(i.profile, (counts.get(i.profile) || 0) + 1);
  return [...counts].map(([p, n]) => (n > 1 ? `${p} ×${n}` : p)).join(' + ');
}

function gpu(node, d) {
  const base = { 'data-gpu': `${node.name}/${d.index}`, title: `GPU ${d.index}${d.uuid ? ` (${d.uuid})` : ''}` };
  if (d.instances && d.instances.length) {
    return h('div.gpu.mig', { ...base, 'data-state': d.instances.some((i) => i.holder) ? 'held' : 'idle', 'aria-label': `GPU ${d.index}, MIG: ${d.instances.map((i) => `${i.profile} ${i.holder ? 'held' : 'free'}`).join(', ')}` },
      h('span.gpu-index', `${d.index} · MIG ${migSummary(d.instances)}`),
      h('div.slices', d.instances.map((inst, j) => h(`div.slice${inst.holder ? '.held' : ''}`, {
        style: `flex:${slices(inst.profile)}${inst.holder ? `;${holderStyle(inst.holder)}` : ''}`,
        title: `MIG ${inst.profile} (#${j})${inst.holder ? `\n${holderText(inst.holder)}` : '\nfree'}`,
        'data-mig': `${d.index}/${j}`, 'data-state': inst.holder ? 'held' : 'free', 'data-holder': inst.holder ? inst.holder.pod : '',
      }))));
  }
  const holders = d.holders || [];
  if (!holders.length) return h('div.gpu.idle', { ...base, 'data-state': 'idle', 'aria-label': `GPU ${d.index} idle` }, h('span.gpu-index', d.index));
  const whole = holders.find((x) => !x.gpuMilli);
  if (whole) {
    return h('div.gpu.held', { ...base, style: holderStyle(whole), 'data-state': 'held', 'data-holder': whole.pod, title: `${base.title}\n${holderText(whole)}`, 'aria-label': `GPU ${d.index} held by ${whole.pod}` },
      h('span.gpu-index', d.index), h('span.who', whole.gang || whole.namespace));
  }
  return h('div.gpu.shared', { ...base, 'data-state': 'held', title: `${base.title}\n${holders.map(holderText).join('\n')}`, 'aria-label': `GPU ${d.index} shared by ${holders.length} pods` },
    h('span.gpu-index', d.index),
    h('div.fractions', holders.map((x) => h('div.fraction', { style: `flex:${x.gpuMilli};${holderStyle(x)}`, 'data-holder': x.pod }))),
    h('div.fractions-free', { style: `flex:${Math.max(0, 1000 - holders.reduce((a, x) => a + x.gpuMilli, 0))}` }));
}

function nodeCard(node) {
  const devices = node.devices || [];
  const held = devices.filter((d) => (d.holders || []).length || (d.instances || []).some((i) => i.holder)).length;
  return h(`article.node${node.cordoned ? '.cordoned' : ''}`, { 'data-node': node.name, 'data-state': node.draining ? 'draining' : node.cordoned ? 'cordoned' : 'ready' },
    h('header', h('h3', node.name),
      node.draining ? h('span.badge.warn', { title: 'cordoned; its pods get their grace period, then are evicted' }, 'draining')
        : node.cordoned ? h('span.badge.warn', 'cordoned') : null,
      h('span.meta', `${node.gpuModel || 'no GPU'} · ${held}/${devices.length} GPUs in use · ${node.pods} ${node.pods === 1 ? 'pod' : 'pods'}`)),
    devices.length ? h('div.gpus', devices.map((d) => gpu(node, d))) : h('p.meta', 'CPU only'),
    (node.taints || []).length ? h('div.taints', node.taints.map((t) => h('code', `${t.key}${t.value ? `=${t.value}` : ''}:${t.effect}`))) : null);
}

function bar(value, max) {
  if (!max) return h('span.meta', value.toFixed(2));
  const pct = Math.min(100, (100 * value) / max);
  return h('div.meter', { title: `${value.toFixed(2)} of ${max}`, role: 'meter', 'aria-valuenow': value, 'aria-valuemax': max },
    h('div.meter-fill', { style: `width:${pct}%` }), h('span', `${value.toFixed(2)} / ${max}`));
}

function queues(list) {
  return h('table.list', { id: 'queues' },
    h('thead', h('tr', ['Queue', 'Unit', 'Weight', 'Capability', 'Deserved', 'Allocated GPUs', 'Running', 'Pending', 'Waiting, and why'].map((c) => h('th', c)))),
    h('tbody', list.map((q) => h('tr', { 'data-queue': q.name },
      h('td', q.parent ? `${q.parent} / ${q.name}` : q.name), h('td', q.unit), h('td', q.weight),
      h('td', q.capabilityGpus ?? '∞'), h('td', q.deservedGpus ?? '—'),
      h('td', bar(q.allocatedGpus || 0, q.capabilityGpus || q.deservedGpus)),
      h('td', q.running), h('td', q.pending),
      h('td', Object.keys(q.waiting || {}).length
        ? h('ul.waiting', Object.entries(q.waiting).map(([pod, why]) => h('li', h('code', pod), ` ${why}`)))
        : h('span.meta', 'nothing waits'))))));
}

function namespaces(list) {
  if (!list.length) return h('p.meta', 'No namespace holds a GPU, and none has a quota.');
  return h('table.list', { id: 'ns-usage' },
    h('thead', h('tr', ['Namespace', 'GPUs held (MIG as its fraction) / quota', 'Weight'].map((c) => h('th', c)))),
    h('tbody', [...list].sort((a, b) => b.heldGpus - a.heldGpus || a.namespace.localeCompare(b.namespace)).map((n) => h('tr', { 'data-namespace': n.namespace },
      h('td', h('span.swatch', { style: `--ns-hue:${hue(n.namespace)}` }), n.namespace),
      h('td', n.gpuQuota != null ? bar(n.heldGpus, n.gpuQuota) : h('span', `${n.heldGpus.toFixed(2)} (no quota)`)),
      h('td', n.weight)))));
}

export function clusterPage(r, main) {
  const controller = new AbortController();
  const body = h('div');
  main.append(h('div.bar', h('h1', 'Cluster'), h('span.meta', { id: 'cluster-name' })), body);
  let timer = null;
  const load = async () => {
    timer = null;
    try {
      const [nodes, qs, ns] = await Promise.all([call('GET', '/api/v1/onyx/nodes'), call('GET', '/api/v1/onyx/queues'), call('GET', '/api/v1/onyx/namespaces')]);
      document.getElementById('cluster-name').textContent = `--cluster ${nodes.cluster}`;
      const items = nodes.items || [];
      const gpus = items.reduce((a, n) => a + (n.devices || []).length, 0);
      fill(body, 
        h('section', h('h2', `Nodes (${items.length}, ${gpus} GPUs)`),
          h('div.legend', h('span.gpu.idle.mini'), ' idle ', h('span.gpu.held.mini'), ' held (colour: namespace) ',
            h('span.gpu.mig.mini'), ' MIG instances, as wide as their compute slices'),
          h('div.nodes', { id: 'nodes' }, items.map(nodeCard))),
        h('section', h('h2', 'Queues'), queues(qs.items || [])),
        h('section', h('h2', 'GPUs held per namespace, against quota'), namespaces(ns.items || [])));
    } catch (err) {
      fill(body, errorBox('Loading the cluster', err, load));
    }
  };
  load();
  // Any workflow change may bind or release GPUs: refresh then, at most twice a second.
  stream('/api/v1/workflow-events/', () => { if (!timer) timer = setTimeout(load, 500); }, controller.signal).catch(() => {});
  return () => { controller.abort(); if (timer) clearTimeout(timer); };
}
