// The "My accounts" page: each account the caller belongs to (the tenancy.loft.sh view, which shows nobody anything
// of an account they are not in), with its spaces against its limit, its quota's use per resource, its templates and
// their parameters, and where its spaces may be made.

import {details, h, usage} from './ui.js';

const list = document.getElementById('accounts-list');

/// One account's card: what `kubectl get accounts` says of it, as meters.
export function card(account, headingLevel = 'h2') {
  const name = account.metadata.name;
  const space = account.spec?.space || {};
  const status = account.status || {};
  const id = `account-${name}`;
  const quota = status.quota;
  const parameters = space.parameters || [];
  return h('article', {class: 'card', 'aria-labelledby': id},
    h(headingLevel, {id}, name),
    usage('Spaces', status.spaceCount ?? 0, space.limit),
    quota
      ? Object.keys(quota.hard || {}).sort().map((resource) => usage(resource, quota.used?.[resource] ?? '0', quota.hard[resource]))
      : h('p', {class: 'hint'}, 'No AccountQuota: its spaces are limited by their own quotas only.'),
    details([
      ['Templates', (space.templates || []).join(', ') || '<none>'],
      ['Template parameters', parameters.length
        ? parameters.map((p) => `${p.name}${p.default ? ` (default ${p.default})` : ''}${p.required ? ', required' : ''}`).join('; ')
        : '<none>'],
      ['Clusters', [...(space.local === false ? [] : ['this cluster']), ...(space.clusters || [])].join(', ') || '<none>'],
      ['Its spaces', (status.spaces || []).join(', ') || '<none>'],
    ]));
}

/// Shows `items` (name -> Account view), as the accounts watch keeps them.
export function render(items) {
  const names = [...items.keys()].sort();
  list.replaceChildren(...(names.length
    ? names.map((name) => card(items.get(name)))
    : [h('p', {}, 'You belong to no account. Ask your platform team for one to create spaces in.')]));
}
