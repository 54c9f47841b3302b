// One workflow: its graph, the chosen node's details, that node's pod log streamed as it is
// written, and the lifecycle actions. Kept live by the watch stream on this one workflow.
// An archived workflow (`#/archive/UID`) is the same page, read once, with the archive's
// actions (resubmit, retry, delete) and no log (its pods are gone).

import { h, fill, call, stream, errorBox, phaseBadge, duration, enc, podName, toast } from '/ui/lib.js';
import { draw, patch } from '/ui/graph.js';

const ACTIONS = [
  // [label, verb, when it applies, confirm?]
  ['Suspend', 'suspend', (w) => running(w) && !w.spec.suspend],
  ['Resume', 'resume', (w) => running(w) && w.spec.suspend],
  ['Stop', 'stop', running, 'Stop runs exit handlers, then ends the workflow. Stop it?'],
  ['Terminate', 'terminate', running, 'Terminate ends the workflow now, without exit handlers. Terminate it?'],
  ['Retry', 'retry', (w) => ['Failed', 'Error'].includes(phase(w))],
  ['Resubmit', 'resubmit', (w) => !running(w)],
  ['Delete', 'delete', () => true, 'Delete this workflow and its logs?'],
];

const ARCHIVED_ACTIONS = [
  ['Resubmit', 'resubmit', () => true],
  ['Retry', 'retry', (w) => ['Failed', 'Error'].includes(phase(w))],
  ['Delete', 'delete', () => true, 'Delete this workflow from the archive?'],
];

function phase(w) { return (w.status && w.status.phase) || 'Pending'; }
function running(w) { return ['Pending', 'Running'].includes(phase(w)); }

export function workflowPage(r, main) {
  const archived = r.parts[0] === 'archive' ? r.parts[1] : null;
  let [, ns, name] = r.parts;
  const controller = new AbortController();
  let wf = null;
  let selected = r.query.get('node') || null;
  let logStop = null;
  let logFor = null;
  let drawn = 0;
  let layoutMs = 0;
  const expanded = new Set();
  let redraw = null;

  const header = h('div.bar');
  const actions = h('div.actions', { role: 'toolbar', 'aria-label': 'Workflow actions' });
  const graph = h('div.graph-wrap', { id: 'graph' });
  const details = h('aside.details', { id: 'details', 'aria-live': 'polite' });
  const logs = h('pre.logs', { id: 'logs', tabindex: 0, 'aria-label': 'Pod log' });
  const logTitle = h('h2', 'Logs');
  main.append(header, actions,
    h('div.split', graph, details),
    h('section.log-section', logTitle, logs));

  const path = archived ? `/api/v1/archived-workflows/${enc(archived)}` : `/api/v1/workflows/${enc(ns)}/${enc(name)}`;
  const here = () => (archived ? `#/archive/${enc(archived)}` : `#/workflows/${enc(ns)}/${enc(name)}`);
  if (archived) fill(logs, 'Pod logs are kept with live workflows only; this one is archived.');

  const renderHeader = () => {
    const s = wf.status || {};
    fill(header, 
      h('h1', name), phaseBadge(phase(wf)), archived ? h('span.badge', 'archived') : null,
      wf.spec.suspend ? h('span.badge', 'suspended') : null,
      h('span.meta', `${ns} · ${duration(s.startedAt, s.finishedAt)}${s.progress ? ` · ${s.progress}` : ''}`),
      s.message ? h('span.msg', s.message) : null);
    fill(actions, ...(archived ? ARCHIVED_ACTIONS : ACTIONS).filter(([, , ok]) => ok(wf)).map(([labelText, verb, , confirmText]) =>
      h('button', { type: 'button', 'data-action': verb, onclick: () => act(verb, labelText, confirmText) }, labelText)));
  };

  const act = async (verb, labelText, confirmText) => {
    if (confirmText && !window.confirm(confirmText)) return;
    try {
      if (verb === 'delete') {
        await call('DELETE', path);
        toast(`Deleted ${name}.`);
        location.hash = archived ? '#/archive' : `#/workflows?namespace=${enc(ns)}`;
        return;
      }
      const out = await call('PUT', `${path}/${verb}`, archived ? { namespace: ns } : {});
      if (archived) {
        toast(`${labelText}: running as ${out.metadata.name}.`);
        location.hash = `#/workflows/${enc(out.metadata.namespace)}/${enc(out.metadata.name)}`;
        return;
      }
      toast(`${labelText}: done.`);
      if (verb === 'resubmit' && out.metadata && out.metadata.name !== name) {
        location.hash = `#/workflows/${enc(ns)}/${enc(out.metadata.name)}`;
      } else if (out && out.metadata) {
        update(out);
      }
    } catch (err) {
      toast(`${labelText} failed: ${err.message}${err.hint ? ` ${err.hint}` : ''}`, true);
    }
  };

  const select = (node) => {
    selected = node.id;
    const q = new URLSearchParams({ node: node.id });
    history.replaceState(null, '', `${here()}?${q}`);
    renderDetails();
    for (const g of graph.querySelectorAll('g.node')) g.classList.toggle('selected', g.dataset.nodeId === node.id);
    if (node.type === 'Pod' && !archived) showLogs(node);
  };

  const renderDetails = () => {
    const n = wf.status && wf.status.nodes && wf.status.nodes[selected];
    if (!n) {
      fill(details, h('p.hint', 'Choose a node in the graph (click it, or Tab to it and press Enter) to see its inputs, outputs and log.'));
      return;
    }
    const rows = [
      ['Name', n.name], ['Type', n.type], ['Phase', phaseBadge(n.phase)], ['Message', n.message],
      ['Template', n.templateName || (n.templateRef && `${n.templateRef.name}/${n.templateRef.template}`)],
      ['Started', n.startedAt], ['Finished', n.finishedAt], ['Duration', duration(n.startedAt, n.finishedAt)],
      ['Host node', n.hostNodeName], ['Pod', n.type === 'Pod' ? podName(name, n) : null],
      ['Exit code', n.outputs && n.outputs.exitCode],
    ];
    const params = (title, list) => (list && list.length
      ? [h('h3', title), h('table.kv', list.map((p) => h('tr', h('th', p.name), h('td', h('code', p.value === undefined ? '' : String(p.value))))))]
      : null);
    const arts = (title, list) => (list && list.length
      ? [h('h3', title), h('ul', list.map((a) => h('li', h('code', a.name), a.path ? ` ${a.path}` : '')))]
      : null);
    fill(details, 
      h('h2', n.displayName || n.name),
      h('table.kv', rows.filter(([, v]) => v !== undefined && v !== null && v !== '').map(([k, v]) => h('tr', h('th', k), h('td', v)))),
      params('Input parameters', n.inputs && n.inputs.parameters),
      arts('Input artifacts', n.inputs && n.inputs.artifacts),
      params('Output parameters', n.outputs && n.outputs.parameters),
      n.outputs && n.outputs.result !== undefined ? [h('h3', 'Result'), h('pre.small', n.outputs.result)] : null,
      arts('Output artifacts', n.outputs && n.outputs.artifacts),
      h('div.gpus', { id: 'node-gpus' }));
    if (n.type === 'Pod') showGpus(podName(name, n), n.phase);
  };

  // What the pod held of the GPUs, from the server's usage ledger: kept after the pod ends.
  // Asked again only when the node's phase changes, not on every event of the workflow.
  let gpus = { key: null, items: [] };
  const showGpus = async (pod, phaseNow) => {
    try {
      const key = `${pod}:${phaseNow}`;
      if (gpus.key !== key) gpus = { key, items: (await call('GET', `/api/v1/onyx/usage/pods/${enc(pod)}?namespace=${enc(ns)}`)).items };
      const u = gpus;
      const box = details.querySelector('#node-gpus');
      if (!box || !u.items.length) return;
      const device = (d) => (d.includes('/') ? `GPU ${d.split('/')[0]} MIG instance ${d.split('/')[1]}` : `GPU ${d}`);
      fill(box, h('h3', 'GPUs it held'), h('ul', u.items.map((x) => h('li',
        `${x.node}: ${x.devices.map(device).join(', ') || 'a share'} (${x.gpus.toFixed(3).replace(/\.?0+$/, '')} GPU) · waited ${duration(x.asked, x.granted)}`
        + ` · held ${duration(x.granted, x.released)}${x.released ? '' : ', still'}`))));
    } catch (_) { /* the ledger is optional here; the rest of the page works */ }
  };

  const showLogs = (node) => {
    const pod = podName(name, node);
    if (logFor === pod) return;
    if (logStop) logStop();
    logFor = pod;
    logTitle.textContent = `Logs: ${node.displayName || node.name}`;
    logs.textContent = '';
    const c = new AbortController();
    logStop = () => c.abort();
    const q = new URLSearchParams({ podName: pod, 'logOptions.container': 'main', 'logOptions.follow': 'true' });
    stream(`${path}/log?${q}`, (item) => {
      if (item.content === undefined) return;
      const atEnd = logs.scrollTop + logs.clientHeight >= logs.scrollHeight - 4;
      logs.append(`${item.content}\n`);
      if (atEnd) logs.scrollTop = logs.scrollHeight;
    }, c.signal).catch((err) => fill(logs, errorBox('Reading the log', err, () => { logFor = null; showLogs(node); })));
  };

  const renderGraph = () => {
    redraw = null;
    const nodes = (wf.status && wf.status.nodes) || {};
    if (!Object.keys(nodes).length) {
      fill(graph, h('p.hint', 'No nodes yet: the workflow has not started.'));
      return;
    }
    const t = performance.now();
    draw(graph, nodes, selected, select, expanded, (id) => { expanded.add(id); renderGraph(); });
    drawn = Date.now();
    layoutMs = performance.now() - t;
  };

  const update = (w) => {
    wf = w;
    renderHeader();
    renderDetails();
    // Phases change in place; only new nodes need a layout, which is the costly part on a
    // large graph: at most once a second, and never more than a quarter of the time.
    if (patch(graph, (wf.status && wf.status.nodes) || {}, expanded)) return;
    const wait = Math.max(1000, 3 * layoutMs) - (Date.now() - drawn);
    if (wait <= 0) renderGraph();
    else if (!redraw) redraw = setTimeout(renderGraph, wait);
  };

  const start = () => {
    call('GET', path).then((w) => {
      ns = w.metadata.namespace;
      name = w.metadata.name;
      update(w);
      if (archived) return undefined;
      const n = selected && w.status && w.status.nodes && w.status.nodes[selected];
      if (n && n.type === 'Pod') showLogs(n);
      const q = new URLSearchParams({ 'listOptions.fieldSelector': `metadata.name=${name}` });
      return stream(`/api/v1/workflow-events/${enc(ns)}?${q}`, (ev) => {
        if (ev.type === 'DELETED') {
          header.append(h('span.stale', 'this workflow was deleted'));
        } else if (ev.object && ev.object.metadata && ev.object.metadata.name === name) {
          update(ev.object);
        }
      }, controller.signal);
    }).catch((err) => fill(main, errorBox(archived ? `Loading archived workflow ${archived}` : `Loading workflow ${ns}/${name}`, err, () => { fill(main); workflowPage(r, main); })));
  };
  start();
  return () => {
    controller.abort();
    if (logStop) logStop();
    if (redraw) clearTimeout(redraw);
  };
}
