// The catalog (the spec's template portal): WorkflowTemplates, ClusterWorkflowTemplates and
// CronWorkflows with their descriptions and parameters, and the form that submits a workflow
// from a template. The form's rules are the API's: what the server refuses is shown by the
// field it names, in the server's words.

import { h, fill, call, errorBox, enc, toast } from '/ui/lib.js';

const DESCRIPTION = 'workflows.argoproj.io/description';

const KINDS = [
  { key: 'workflowtemplate', title: 'Workflow templates', list: '/api/v1/workflow-templates/', scoped: true },
  { key: 'clusterworkflowtemplate', title: 'Cluster workflow templates', list: '/api/v1/cluster-workflow-templates', scoped: false },
  { key: 'cronworkflow', title: 'Cron workflows', list: '/api/v1/cron-workflows/', scoped: true },
];

function params(obj) {
  const spec = obj.spec || {};
  const wfSpec = spec.workflowSpec || spec;
  return ((wfSpec.arguments && wfSpec.arguments.parameters) || []);
}

export function catalogPage(r, main) {
  main.append(h('div.bar', h('h1', 'Catalog'),
    h('p.hint', 'Templates and schedules stored on the server. Submit one to start a workflow from it.')));
  for (const kind of KINDS) {
    const section = h('section.catalog', h('h2', kind.title));
    main.append(section);
    const load = () => call('GET', kind.list).then((list) => {
      const items = list.items || [];
      fill(section, h('h2', kind.title, h('span.count', ` ${items.length}`)));
      if (!items.length) {
        section.append(h('p.hint', `None stored yet (onyx ${kind.key === 'cronworkflow' ? 'cron' : 'template'} create FILE).`));
        return;
      }
      section.append(h('div.cards', items.map((o) => card(kind, o))));
    }, (err) => fill(section, h('h2', kind.title), errorBox(`Listing ${kind.title.toLowerCase()}`, err, load)));
    load();
  }
}

function card(kind, o) {
  const md = o.metadata || {};
  const desc = (md.annotations && md.annotations[DESCRIPTION]) || '';
  const ps = params(o);
  const spec = o.spec || {};
  return h('article.card', { dataset: { name: md.name } },
    h('h3', md.name), kind.scoped ? h('div.meta', md.namespace) : null,
    kind.key === 'cronworkflow'
      ? h('div.meta', `schedule ${spec.schedule || (spec.schedules || []).join(', ')}${spec.timezone ? ` (${spec.timezone})` : ''}${spec.suspend ? ' · suspended' : ''}`)
      : null,
    desc ? h('p', desc) : null,
    ps.length ? h('table.kv', ps.map((p) => h('tr', h('th', p.name),
      h('td', p.enum ? `one of ${p.enum.join(', ')}` : (p.value !== undefined ? h('code', String(p.value)) : h('em', 'required')),
        p.description ? h('div.meta', p.description) : null)))) : h('p.meta', 'No parameters.'),
    h('a.button', { href: `#/submit/${kind.key}/${enc(kind.scoped ? md.namespace : '-')}/${enc(md.name)}` }, 'Submit…'));
}

const PATHS = {
  workflowtemplate: (ns, name) => `/api/v1/workflow-templates/${enc(ns)}/${enc(name)}`,
  clusterworkflowtemplate: (_ns, name) => `/api/v1/cluster-workflow-templates/${enc(name)}`,
  cronworkflow: (ns, name) => `/api/v1/cron-workflows/${enc(ns)}/${enc(name)}`,
};

export function submitPage(r, main) {
  const [, kind, nsPart, name] = r.parts;
  if (!PATHS[kind] || !name) {
    main.append(h('div.error', `There is no template at this address. Go back to the `, h('a', { href: '#/catalog' }, 'catalog'), '.'));
    return;
  }
  const load = () => call('GET', PATHS[kind](nsPart, name)).then((o) => form(main, kind, nsPart === '-' ? 'default' : nsPart, o),
    (err) => fill(main, errorBox(`Loading ${kind}/${name}`, err, load)));
  load();
}

function form(main, kind, ns, o) {
  const fields = new Map();
  const ps = params(o);
  const problem = h('div.form-error', { role: 'alert' });
  const nsInput = h('input', { id: 'p-namespace', name: 'namespace', value: ns, required: true });
  const rows = ps.map((p) => {
    const id = `p-${p.name}`;
    const input = p.enum
      ? h('select', { id, name: p.name }, p.enum.map((v) => h('option', { value: v, selected: String(p.value) === String(v) }, v)))
      : h('input', { id, name: p.name, value: p.value === undefined ? '' : String(p.value), required: p.value === undefined });
    fields.set(p.name, input);
    return h('div.field', h('label', { for: id }, p.name), input,
      p.description ? h('div.meta', p.description) : null, h('div.field-error', { id: `${id}-error` }));
  });
  // Parameters the namespace's policy asks for (the spec's ticket_id) may not be declared by
  // the template: the user can add any name=value here.
  const extra = h('div.extra');
  const addExtra = (k = '', v = '') => {
    const key = h('input', { 'aria-label': 'parameter name', value: k, size: 14, class: 'extra-key' });
    const val = h('input', { 'aria-label': 'parameter value', value: v, size: 20, class: 'extra-value' });
    extra.append(h('div.field.inline', key, ' = ', val));
  };
  if (!ps.some((p) => p.name === 'ticket_id')) addExtra('ticket_id', '');
  const submit = async (e) => {
    e.preventDefault();
    fill(problem);
    for (const el of main.querySelectorAll('.field-error')) el.textContent = '';
    const parameters = [...fields].map(([k, input]) => `${k}=${input.value}`);
    for (const row of extra.querySelectorAll('.field')) {
      const k = row.querySelector('.extra-key').value.trim();
      if (k) parameters.push(`${k}=${row.querySelector('.extra-value').value}`);
    }
    const body = { resourceKind: kind, resourceName: o.metadata.name, submitOptions: { parameters } };
    try {
      const wf = await call('POST', `/api/v1/workflows/${enc(nsInput.value.trim())}/submit`, body);
      toast(`Submitted ${wf.metadata.name}.`);
      location.hash = `#/workflows/${enc(wf.metadata.namespace)}/${enc(wf.metadata.name)}`;
    } catch (err) {
      fill(problem, h('strong', 'The server refused this submission: '), err.message);
      // Show the message by the field it names, too.
      for (const [k, input] of fields) {
        if (err.message.includes(k)) document.getElementById(`${input.id}-error`).textContent = err.message;
      }
      for (const key of extra.querySelectorAll('.extra-key')) {
        if (key.value && err.message.includes(key.value)) key.parentElement.classList.add('invalid');
      }
    }
  };
  const md = o.metadata || {};
  fill(main, 
    h('div.bar', h('h1', `Submit from ${md.name}`), h('span.meta', kind)),
    md.annotations && md.annotations[DESCRIPTION] ? h('p', md.annotations[DESCRIPTION]) : null,
    h('form.submit', { id: 'submit-form', onsubmit: submit },
      h('div.field', h('label', { for: 'p-namespace' }, 'Namespace'), nsInput),
      rows,
      h('h3', 'Other parameters'), extra,
      h('p', h('button', { type: 'button', onclick: () => addExtra() }, 'Add parameter')),
      problem,
      h('p', h('button.primary', { type: 'submit' }, 'Submit'), ' ', h('a', { href: '#/catalog' }, 'Cancel'))));
}
