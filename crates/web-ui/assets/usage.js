// Usage over a month: GPU-hours per namespace and queue from the server's usage ledger (a MIG
// instance counts as its compute slices over 7, a fraction as its share), GPU-hours per day as
// a chart, the workflows that finished each day with their success rate, and the mean wait of
// GPU pods from asking to be scheduled to their grant.

import { h, fill, hue, call, errorBox, enc } from '/ui/lib.js';
import uPlot from '/ui/vendor/uPlot.esm.js';

function thisMonth() {
  const d = new Date();
  return `${d.getUTCFullYear()}-${String(d.getUTCMonth() + 1).padStart(2, '0')}`;
}

/** GPU-hours as a reader wants them: two decimals, or two significant digits when small. */
function hours(v) {
  return v === 0 || v >= 0.1 ? v.toFixed(2) : v.toPrecision(2);
}

function daysOf(month) {
  const [y, m] = month.split('-').map(Number);
  const n = new Date(Date.UTC(y, m, 0)).getUTCDate();
  return Array.from({ length: n }, (_, i) => `${month}-${String(i + 1).padStart(2, '0')}`);
}

function chart(el, title, days, series, yLabel) {
  const width = Math.max(300, Math.min(el.clientWidth || 900, 1200));
  const xs = days.map((d) => Date.parse(`${d}T00:00:00Z`) / 1000);
  const opts = {
    title, width, height: 240,
    scales: { x: { time: true } },
    axes: [{}, { label: yLabel }],
    series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 2, points: { show: true } }))],
  };
  el.replaceChildren();
  return new uPlot(opts, [xs, ...series.map((s) => s.values)], el);
}

export function usagePage(r, main) {
  const month = r.query.get('month') || thisMonth();
  const input = h('input', { type: 'month', id: 'u-month', value: month });
  const body = h('div');
  main.append(
    h('div.bar', h('h1', 'Usage'),
      h('form.filters', { onsubmit: (e) => { e.preventDefault(); location.hash = `#/usage?month=${enc(input.value)}`; } },
        h('label', { for: 'u-month' }, 'Month'), input, h('button', { type: 'submit' }, 'Show'))),
    body);
  const charts = [];
  const load = async () => {
    try {
      const [u, live, archived] = await Promise.all([
        call('GET', `/api/v1/onyx/usage?month=${enc(month)}`),
        call('GET', '/api/v1/workflows/'),
        call('GET', '/api/v1/archived-workflows'),
      ]);
      const days = daysOf(month);
      const names = u.namespaces.map((n) => n.namespace);
      const max = Math.max(1e-9, ...u.namespaces.map((n) => n.gpuHours));
      const table = h('table.list', { id: 'usage' },
        h('thead', h('tr', ['Namespace', 'GPU-hours', 'By queue', 'CPU-hours', 'Cost'].map((c) => h('th', c)))),
        h('tbody', u.namespaces.length ? u.namespaces.map((n) => h('tr', { 'data-namespace': n.namespace, 'data-gpu-hours': n.gpuHours },
          h('td', h('span.swatch', { style: `--ns-hue:${hue(n.namespace)}` }), n.namespace),
          h('td', h('div.meter', h('div.meter-fill', { style: `width:${(100 * n.gpuHours) / max}%;background:hsl(${hue(n.namespace)} 62% 52%)` }),
            h('span', hours(n.gpuHours)))),
          h('td', Object.entries(n.queues).map(([q, v]) => h('span.badge', `${q} ${hours(v)}`))),
          h('td', hours(n.cpuHours)),
          h('td', `${n.cost.toFixed(2)} ${u.currency}`)))
          : h('tr', h('td.empty', { colspan: 5 }, `No GPU was held in ${month}.`))));
      // Workflows that finished in the month, by day.
      const finished = new Map(days.map((d) => [d, { ok: 0, all: 0 }]));
      const seen = new Set();
      for (const w of [...(live.items || []), ...(archived.items || [])]) {
        const s = w.status || {};
        if (!s.finishedAt || seen.has(w.metadata.uid)) continue;
        seen.add(w.metadata.uid);
        const day = finished.get(s.finishedAt.slice(0, 10));
        if (!day) continue;
        day.all += 1;
        if (s.phase === 'Succeeded') day.ok += 1;
      }
      const total = [...finished.values()].reduce((a, d) => ({ ok: a.ok + d.ok, all: a.all + d.all }), { ok: 0, all: 0 });
      const gpuChart = h('div.chart', { id: 'gpu-chart' });
      const okChart = h('div.chart', { id: 'success-chart' });
      const waitChart = h('div.chart', { id: 'wait-chart' });
      fill(body,
        h('p.meta', `${hours(u.totalGpuHours)} GPU-hours and ${hours(u.totalCpuHours)} CPU-hours in ${month} (UTC), ${u.totalCost.toFixed(2)} ${u.currency} at the configured prices; MIG instances count as their share of a GPU.`),
        table,
        h('section', h('h2', 'GPU-hours per day'), gpuChart),
        h('section', h('h2', 'Workflows finished per day'),
          h('p.meta', { id: 'success-total' }, total.all
            ? `${total.all} finished, ${total.ok} succeeded (${((100 * total.ok) / total.all).toFixed(1)} %).`
            : `No workflow finished in ${month}.`),
          okChart),
        h('section', h('h2', 'Mean wait of GPU pods per day'),
          h('p.meta', { id: 'wait-total' }, u.meanWaitSeconds != null
            ? `From asking to be scheduled to holding their GPUs: ${u.meanWaitSeconds.toFixed(1)} s on average over ${Object.values(u.waits).reduce((a, w) => a + w.pods, 0)} pods.`
            : `No GPU pod was granted in ${month}.`),
          waitChart));
      charts.forEach((c) => c.destroy());
      charts.length = 0;
      if (names.length) {
        charts.push(chart(gpuChart, '', days, names.map((n) => ({
          label: n, color: `hsl(${hue(n)} 62% 45%)`, values: days.map((d) => (u.days[d] && u.days[d][n]) || 0),
        })), 'GPU-hours'));
      } else {
        gpuChart.append(h('p.meta', 'Nothing to draw.'));
      }
      charts.push(chart(okChart, '', days, [
        { label: 'finished', color: '#5d6b7e', values: days.map((d) => finished.get(d).all) },
        { label: 'succeeded', color: '#18a97a', values: days.map((d) => finished.get(d).ok) },
      ], 'workflows'));
      charts.push(chart(waitChart, '', days, [
        { label: 'mean wait (s)', color: '#d99a1e', values: days.map((d) => (u.waits[d] ? u.waits[d].meanWaitSeconds : null)) },
      ], 'seconds'));
    } catch (err) {
      fill(body, errorBox(`Loading usage for ${month}`, err, load));
    }
  };
  load();
  return () => charts.forEach((c) => c.destroy());
}
