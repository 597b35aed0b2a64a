// The console's entry: who the user is (a SelfSubjectReview), whether they are on the platform team (may they list
// accounts.config.tenancy.loft.sh? a SelfSubjectAccessReview), the pages behind the navigation (#spaces, #accounts,
// ...), and the watches that keep the spaces and accounts current while the page is open.

import {ACCOUNTS, follow, request, SPACES} from './api.js';
import * as accounts from './accounts.js';
import './connect.js';
import * as create from './create.js';
import * as expose from './expose.js';
import * as platform from './platform.js';
import * as shared from './shared.js';
import * as spaces from './spaces.js';
import {alert, clearAlert, tickAges} from './ui.js';

const PAGES = ['spaces', 'accounts', 'shared', ...platform.pages];
let current = '';

/// Shows the page the URL's fragment names (the spaces by default); `focus`: move the focus to its heading, as a
/// screen reader user expects after following a link.
function route(focus) {
  const wanted = location.hash.slice(1);
  // An unknown fragment (the skip link's #main) leaves the page as it is.
  const page = PAGES.includes(wanted) ? wanted : current || 'spaces';
  if (wanted && !PAGES.includes(wanted) && current) {
    return;
  }
  const changed = page !== current;
  current = page;
  for (const section of document.querySelectorAll('main > section')) {
    section.hidden = section.dataset.page !== page;
  }
  for (const link of document.querySelectorAll('nav a')) {
    if (link.getAttribute('href') === `#${page}`) {
      link.setAttribute('aria-current', 'page');
    } else {
      link.removeAttribute('aria-current');
    }
  }
  const heading = document.querySelector(`[data-page="${page}"] h1`);
  document.title = `${heading.textContent} · tenancy console`;
  if (focus && changed) {
    heading.focus();
  }
  shared.shown(page === 'shared');
  if (platform.pages.includes(page)) {
    platform.show(page);
  }
}

async function whoami() {
  const review = await request('POST', 'apis/authentication.k8s.io/v1/selfsubjectreviews', {
    apiVersion: 'authentication.k8s.io/v1',
    kind: 'SelfSubjectReview',
  });
  const user = review.status?.userInfo || {};
  const groups = (user.groups || []).filter((g) => g !== 'system:authenticated');
  document.getElementById('whoami').textContent =
    `Signed in as ${user.username || 'an unknown user'}${groups.length ? ` (groups: ${groups.join(', ')})` : ''}`;
}

/// The platform team's pages, for those who may list Accounts (the server answers 403 to the rest anyway).
async function platformTeam() {
  const review = await request('POST', 'apis/authorization.k8s.io/v1/selfsubjectaccessreviews', {
    apiVersion: 'authorization.k8s.io/v1',
    kind: 'SelfSubjectAccessReview',
    spec: {resourceAttributes: {group: 'config.tenancy.loft.sh', resource: 'accounts', verb: 'list'}},
  });
  const allowed = Boolean(review.status?.allowed);
  for (const item of document.querySelectorAll('nav .platform')) {
    item.hidden = !allowed;
  }
  document.body.classList.toggle('platform-team', allowed);
}

whoami().catch((error) => {
  document.getElementById('whoami').textContent = 'Could not tell who you are.';
  alert('whoami', error);
});
platformTeam().catch((error) => alert('platform', error));

follow(SPACES, {
  onChange: (items) => {
    clearAlert('spaces');
    spaces.render(items);
    shared.setSpaces(items);
    expose.setSpaces(items);
  },
  onError: (error) => alert('spaces', error),
});
follow(ACCOUNTS, {
  onChange: (items) => {
    clearAlert('accounts');
    accounts.render(items);
    create.setAccounts(items);
  },
  onError: (error) => alert('accounts', error),
});

window.addEventListener('hashchange', () => route(true));
route(false);
setInterval(tickAges, 5000);
