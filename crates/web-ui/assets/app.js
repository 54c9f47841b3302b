// The page router: `#/page/...` picks a page; each page renders into <main> and returns a
// function that stops what it started (streams, timers) when the user goes elsewhere.

import { route } from '/ui/lib.js';
import { workflowList } from '/ui/workflows.js';
import { workflowPage } from '/ui/workflow.js';
import { catalogPage, submitPage } from '/ui/catalog.js';
import { archivePage } from '/ui/archive.js';
import { clusterPage } from '/ui/cluster.js';
import { usagePage } from '/ui/usage.js';

const pages = {
  workflows: (r, main) => (r.parts.length >= 3 ? workflowPage(r, main) : workflowList(r, main)),
  catalog: catalogPage,
  submit: submitPage,
  archive: (r, main) => (r.parts.length >= 2 ? workflowPage(r, main) : archivePage(r, main)),
  cluster: clusterPage,
  usage: usagePage,
};

let stop = null;

function show() {
  if (stop) stop();
  stop = null;
  const r = route();
  const name = pages[r.parts[0]] ? r.parts[0] : 'workflows';
  for (const a of document.querySelectorAll('nav a')) {
    a.toggleAttribute('aria-current', a.dataset.page === name || (name === 'submit' && a.dataset.page === 'catalog'));
  }
  const main = document.getElementById('app');
  main.replaceChildren();
  stop = pages[name](r, main) || null;
}

document.getElementById('server').textContent = location.host;
window.addEventListener('hashchange', show);
show();
