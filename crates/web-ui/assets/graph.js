// A workflow's node graph as Argo's UI draws it: the status's nodes linked parent → child,
// laid out top to bottom by dagre. Step groups and task groups are small dots, retries and
// loops are the node that groups their attempts or items, leaves are labelled boxes
// coloured by phase. A fan-out wider than MAX_CHILDREN (a loop over thousands of items) is
// drawn collapsed: its unfinished and failed children, then the first ones, and one "+N more"
// node that expands it — a row of 5,000 boxes is a million pixels wide and takes seconds to
// lay out, and nobody reads it.

import dagre from '/ui/vendor/dagre.esm.js';

const SVG = 'http://www.w3.org/2000/svg';
const DOT_TYPES = new Set(['StepGroup', 'TaskGroup']);
const BOX = { width: 180, height: 34 };
const DOT = { width: 16, height: 16 };
export const MAX_CHILDREN = 40;
const DONE = new Set(['Succeeded', 'Skipped', 'Omitted']);
const MORE = '\u0000more';

function el(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * What is drawn: every node reachable from the roots through shown edges, and for each
 * collapsed fan-out a placeholder `{id, parent, hidden}`. `expanded` holds the ids of
 * fan-outs the user opened.
 */
export function visible(nodes, expanded) {
  const isChild = new Set();
  for (const n of Object.values(nodes)) for (const c of n.children || []) isChild.add(c);
  const queue = Object.keys(nodes).filter((id) => !isChild.has(id));
  const shown = new Set();
  const more = [];
  while (queue.length) {
    const id = queue.pop();
    if (shown.has(id)) continue;
    shown.add(id);
    const kids = (nodes[id].children || []).filter((c) => nodes[c]);
    if (kids.length <= MAX_CHILDREN || expanded.has(id)) {
      queue.push(...kids);
      continue;
    }
    const keep = new Set(kids.filter((c) => !DONE.has(nodes[c].phase)).slice(0, MAX_CHILDREN / 2));
    for (const c of kids) {
      if (keep.size >= MAX_CHILDREN / 2) break;
      keep.add(c);
    }
    queue.push(...keep);
    more.push({ id: id + MORE, parent: id, hidden: kids.filter((c) => !keep.has(c)) });
  }
  return { shown, more };
}

/** The graph's layout: positions of the shown nodes and placeholders, edges as point lists. */
export function layout(nodes, vis) {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: 'TB', nodesep: 16, ranksep: 36, marginx: 16, marginy: 16 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const id of vis.shown) g.setNode(id, DOT_TYPES.has(nodes[id].type) ? { ...DOT } : { ...BOX });
  for (const m of vis.more) g.setNode(m.id, { ...BOX });
  for (const id of vis.shown) {
    for (const c of nodes[id].children || []) if (vis.shown.has(c)) g.setEdge(id, c);
  }
  for (const m of vis.more) g.setEdge(m.parent, m.id);
  dagre.layout(g);
  return g;
}

function label(n) {
  const name = n.displayName || n.name;
  return name.length > 24 ? `${name.slice(0, 23)}…` : name;
}

function nodeClass(n, selected) {
  return `node t-${n.type} p-${n.phase || 'Pending'}${selected ? ' selected' : ''}`;
}

function tooltip(n) {
  return `${n.name}\n${n.type} · ${n.phase || 'Pending'}${n.message ? `\n${n.message}` : ''}`;
}

function moreLabel(nodes, m) {
  const by = new Map();
  for (const id of m.hidden) {
    const p = nodes[id].phase || 'Pending';
    by.set(p, (by.get(p) || 0) + 1);
  }
  return { text: `+${m.hidden.length} more`, detail: [...by].map(([p, n]) => `${n} ${p}`).join(', ') };
}

/**
 * Bring a drawn graph up to date when only phases and messages changed (the same nodes shown):
 * no layout, so a running 5,000-node workflow updates as cheaply as a small one. Returns
 * false when what is shown changed and the graph must be drawn again.
 */
export function patch(container, nodes, expanded) {
  const vis = visible(nodes, expanded);
  const drawn = container.querySelectorAll('g.node');
  const placeholders = container.querySelectorAll('g.more');
  if (drawn.length !== vis.shown.size || placeholders.length !== vis.more.length) return false;
  for (const grp of drawn) if (!vis.shown.has(grp.dataset.nodeId)) return false;
  for (const grp of drawn) {
    const n = nodes[grp.dataset.nodeId];
    const phase = n.phase || 'Pending';
    if (grp.dataset.phase === phase) continue;
    grp.dataset.phase = phase;
    grp.setAttribute('class', nodeClass(n, grp.classList.contains('selected')));
    grp.setAttribute('aria-label', `${n.displayName || n.name}: ${n.type} ${phase}`);
    grp.querySelector('title').textContent = tooltip(n);
  }
  for (const m of vis.more) {
    const grp = container.querySelector(`g.more[data-parent="${CSS.escape(m.parent)}"]`);
    if (!grp) return false;
    const { text, detail } = moreLabel(nodes, m);
    grp.querySelector('text').textContent = text;
    grp.querySelector('title').textContent = `${detail}\nclick to show them`;
  }
  for (const line of container.querySelectorAll('polyline.edge')) {
    const to = nodes[line.dataset.to];
    if (to) line.setAttribute('class', `edge p-${to.phase || 'Pending'}`);
  }
  return true;
}

function activate(grp, fn) {
  grp.addEventListener('click', fn);
  grp.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); fn(); } });
}

/**
 * Draw the graph into `container`; `onSelect(node)` is called when a node is clicked or
 * chosen with the keyboard, `onExpand(id)` when a collapsed fan-out is opened.
 */
export function draw(container, nodes, selected, onSelect, expanded = new Set(), onExpand = () => {}) {
  const vis = visible(nodes, expanded);
  const g = layout(nodes, vis);
  const { width, height } = g.graph();
  const svg = el('svg', {
    width: Math.max(width, 200), height: Math.max(height, 80), role: 'group',
    'aria-label': 'workflow graph', class: 'graph',
  });
  const edges = el('g', { class: 'edges' });
  for (const e of g.edges()) {
    const pts = g.edge(e).points.map((p) => `${p.x},${p.y}`).join(' ');
    const to = nodes[e.w];
    edges.append(el('polyline', { points: pts, class: `edge p-${(to && to.phase) || 'Pending'}`, 'data-to': e.w }));
  }
  svg.append(edges);
  for (const id of vis.shown) {
    const n = nodes[id];
    const pos = g.node(id);
    const phase = n.phase || 'Pending';
    const grp = el('g', {
      class: nodeClass(n, id === selected),
      transform: `translate(${pos.x - pos.width / 2},${pos.y - pos.height / 2})`,
      tabindex: 0, role: 'button',
      'aria-label': `${n.displayName || n.name}: ${n.type} ${phase}`,
      'data-node-id': id, 'data-node-name': n.displayName || n.name,
      'data-phase': phase, 'data-type': n.type,
    });
    grp.append(el('title', {}, tooltip(n)));
    if (DOT_TYPES.has(n.type)) {
      grp.append(el('circle', { cx: DOT.width / 2, cy: DOT.height / 2, r: 6, class: 'dot' }));
    } else {
      grp.append(el('rect', { width: BOX.width, height: BOX.height, rx: 6, class: 'box' }));
      grp.append(el('rect', { width: 8, height: BOX.height, rx: 3, class: 'stripe' }));
      const kind = { Retry: '↻ ', DAG: '◇ ', Steps: '☰ ', Suspend: '⏸ ', Skipped: '⤼ ', HTTP: '⇄ ' }[n.type] || '';
      grp.append(el('text', { x: 16, y: 21, class: 'label' }, kind + label(n)));
    }
    activate(grp, () => onSelect(n));
    svg.append(grp);
  }
  for (const m of vis.more) {
    const pos = g.node(m.id);
    const { text, detail } = moreLabel(nodes, m);
    const grp = el('g', {
      class: 'more', tabindex: 0, role: 'button', 'data-parent': m.parent,
      transform: `translate(${pos.x - pos.width / 2},${pos.y - pos.height / 2})`,
      'aria-label': `${text}: ${detail}; show them`,
    });
    grp.append(el('title', {}, `${detail}\nclick to show them`));
    grp.append(el('rect', { width: BOX.width, height: BOX.height, rx: 17, class: 'box' }));
    grp.append(el('text', { x: BOX.width / 2, y: 21, class: 'label', 'text-anchor': 'middle' }, text));
    activate(grp, () => onExpand(m.parent));
    svg.append(grp);
  }
  container.replaceChildren(svg);
  return svg;
}
