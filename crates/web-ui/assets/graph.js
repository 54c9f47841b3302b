// A workflow's node graph as Argo's UI draws it: the status's nodes linked parent → child,
// laid out top to bottom by dagre. Step groups and task groups are small dots, retries and
// loops are the node that groups their attempts or items, leaves are labelled boxes
// coloured by phase.

import dagre from '/ui/vendor/dagre.esm.js';

const SVG = 'http://www.w3.org/2000/svg';
const DOT_TYPES = new Set(['StepGroup', 'TaskGroup']);
const BOX = { width: 180, height: 34 };
const DOT = { width: 16, height: 16 };

function el(tag, attrs, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

/** The graph's layout: positions of every node, and the edges as point lists. */
export function layout(nodes) {
  const g = new dagre.graphlib.Graph();
  g.setGraph({ rankdir: 'TB', nodesep: 16, ranksep: 36, marginx: 16, marginy: 16 });
  g.setDefaultEdgeLabel(() => ({}));
  for (const n of Object.values(nodes)) {
    g.setNode(n.id, DOT_TYPES.has(n.type) ? { ...DOT } : { ...BOX });
  }
  for (const n of Object.values(nodes)) {
    for (const c of n.children || []) if (nodes[c]) g.setEdge(n.id, c);
    // A DAG's or steps' outbound nodes lead to its exit handler, as Argo draws it.
  }
  dagre.layout(g);
  return g;
}

function label(n) {
  const name = n.displayName || n.name;
  return name.length > 24 ? `${name.slice(0, 23)}…` : name;
}

/**
 * Draw the graph into `container`; `onSelect(node)` is called when a node is clicked or
 * chosen with the keyboard. Returns the SVG.
 */
export function draw(container, nodes, selected, onSelect) {
  const g = layout(nodes);
  const { width, height } = g.graph();
  const svg = el('svg', {
    width: Math.max(width, 200), height: Math.max(height, 80), role: 'group',
    'aria-label': 'workflow graph', class: 'graph',
  });
  const edges = el('g', { class: 'edges' });
  for (const e of g.edges()) {
    const pts = g.edge(e).points.map((p) => `${p.x},${p.y}`).join(' ');
    const to = nodes[e.w];
    edges.append(el('polyline', { points: pts, class: `edge p-${(to && to.phase) || 'Pending'}` }));
  }
  svg.append(edges);
  for (const id of g.nodes()) {
    const n = nodes[id];
    const pos = g.node(id);
    const phase = n.phase || 'Pending';
    const grp = el('g', {
      class: `node t-${n.type} p-${phase}${id === selected ? ' selected' : ''}`,
      transform: `translate(${pos.x - pos.width / 2},${pos.y - pos.height / 2})`,
      tabindex: 0, role: 'button',
      'aria-label': `${n.displayName || n.name}: ${n.type} ${phase}`,
      'data-node-id': id, 'data-node-name': n.displayName || n.name,
      'data-phase': phase, 'data-type': n.type,
    });
    const title = el('title', {}, `${n.name}\n${n.type} · ${phase}${n.message ? `\n${n.message}` : ''}`);
    grp.append(title);
    if (DOT_TYPES.has(n.type)) {
      grp.append(el('circle', { cx: DOT.width / 2, cy: DOT.height / 2, r: 6, class: 'dot' }));
    } else {
      grp.append(el('rect', { width: BOX.width, height: BOX.height, rx: 6, class: 'box' }));
      grp.append(el('rect', { width: 8, height: BOX.height, rx: 3, class: 'stripe' }));
      const kind = { Retry: '↻ ', DAG: '◇ ', Steps: '☰ ', Suspend: '⏸ ', Skipped: '⤼ ', HTTP: '⇄ ' }[n.type] || '';
      grp.append(el('text', { x: 16, y: 21, class: 'label' }, kind + label(n)));
    }
    const pick = () => onSelect(n);
    grp.addEventListener('click', pick);
    grp.addEventListener('keydown', (ev) => { if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); pick(); } });
    svg.append(grp);
  }
  container.replaceChildren(svg);
  return svg;
}
