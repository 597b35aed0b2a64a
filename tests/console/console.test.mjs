// The web console in a real browser: Debian's Chromium, driven by playwright-core, through kubectl proxy on the local
// control plane of a test run (TENANCY_E2E_ENV, written by tests/env/up.sh), as the tenant alice (with her own token,
// through `kubectl space console`) and as an admin (through `kubectl proxy`). Locators are by role and label, so each
// one is also a check that the page says what it is to a screen reader. Every page is screenshotted into a directory
// the run prints (CONSOLE_SCREENSHOTS, or the state directory's console-screenshots/).
//
// What it makes (an Account, a SpaceTemplate with a parameter, an AccountQuota, namespaces, a Cluster) has names of
// its own, made with kubectl as admin and removed at the end.

import assert from 'node:assert/strict';
import {execFileSync, spawn} from 'node:child_process';
import {randomBytes} from 'node:crypto';
import {existsSync, mkdirSync} from 'node:fs';
import {dirname, join} from 'node:path';
import {after, before, test} from 'node:test';
import {createInterface} from 'node:readline';

import {chromium} from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
/// Root needs --no-sandbox; the rest keep the browser from calling anything but the pages it is sent to (updates,
/// sync, field trials, QUIC probes): the test talks to loopback only.
const CHROMIUM_ARGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--disable-domain-reliability', '--disable-features=OptimizationHints,MediaRouter',
];
const SETTLE = 30_000;

const env = loadEnv(process.env.TENANCY_E2E_ENV);
const id = `console-${randomBytes(3).toString('hex')}`;
const shots = process.env.CONSOLE_SCREENSHOTS || join(env.STATE_DIR, 'console-screenshots');
const children = [];
let browser;
let alice;
let admin;

/// The env file's variables (`export NAME=value`, as bash's printf %q wrote them), read by bash itself.
function loadEnv(file) {
  assert.ok(file, 'TENANCY_E2E_ENV must name the env file of a running control plane (tests/env/up.sh prints it)');
  const out = execFileSync('bash', ['-c', 'set -a; source "$1"; env -0', 'env', file], {encoding: 'utf8'});
  return Object.fromEntries(out.split('\0').filter(Boolean).map((line) => {
    const at = line.indexOf('=');
    return [line.slice(0, at), line.slice(at + 1)];
  }));
}

/// kubectl as `user` (alice, admin, ...); stdout, or a thrown error carrying stderr.
function kubectl(user, args, input) {
  try {
    return execFileSync(env.KUBECTL, ['--kubeconfig', env[`KUBECONFIG_${user.toUpperCase()}`], ...args], {
      encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'],
    });
  } catch (error) {
    error.message = `kubectl ${args.join(' ')} as ${user}: ${error.stderr || error.message}`;
    throw error;
  }
}

const apply = (manifest) => kubectl('admin', ['apply', '-f', '-'], JSON.stringify(manifest));

/// Alice's spaces as `kubectl get spaces -o name` lists them.
function kubectlSpaces(user) {
  return kubectl(user, ['get', 'spaces.tenancy.loft.sh', '-o', 'name'])
    .split('\n').filter(Boolean).map((line) => line.replace(/^space\.tenancy\.loft\.sh\//, '')).sort();
}

/// Starts `program args` and resolves with the console URL once it prints the line kubectl proxy prints when it
/// listens; the process is stopped at the end of the run, by its pid.
function serve(program, args, extraEnv = {}) {
  const child = spawn(program, args, {env: {...process.env, ...extraEnv}, stdio: ['ignore', 'pipe', 'pipe']});
  children.push(child);
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${program} did not start serving in 20s: ${stderr}`)), 20_000);
    child.on('exit', (code) => reject(new Error(`${program} exited (${code}): ${stderr}`)));
    createInterface({input: child.stdout}).on('line', (line) => {
      const console = /^Console: (\S+)/.exec(line);
      const proxy = /^Starting to serve on (\S+)/.exec(line);
      if (console || proxy) {
        clearTimeout(timer);
        resolve(console ? console[1] : `http://${proxy[1]}/apis/tenancy.loft.sh/v1/console/`);
      }
    });
  });
}

/// Retries `check` until it stops throwing, for at most `timeout` ms; the last failure is the test's.
async function eventually(check, timeout = SETTLE) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) {
        throw error;
      }
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}

async function screenshot(page, name) {
  await page.screenshot({path: join(shots, `${name}.png`), fullPage: true});
}

/// The names in the spaces table, as the page shows them (row headers).
async function shownSpaces(page) {
  const table = page.getByRole('table', {name: 'Your spaces'});
  return (await table.getByRole('rowheader').allTextContents()).map((s) => s.trim()).sort();
}

/// Waits until the page lists exactly what kubectl lists for `user` (asked again each time, so both settle).
async function sameAsKubectl(page, user) {
  return eventually(async () => {
    const [shown, listed] = [await shownSpaces(page), kubectlSpaces(user)];
    assert.deepEqual(shown, listed, `the console shows ${user} ${shown}, kubectl lists ${listed}`);
    return shown;
  });
}

async function open(user, url, viewport = {width: 1280, height: 900}) {
  const context = await browser.newContext({viewport});
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error' && !/status of (403|404|409|410|422)/.test(message.text())) {
      problems.push(`console error: ${message.text()}`);
    }
  });
  await page.goto(url);
  await page.getByRole('heading', {name: 'Spaces', level: 1}).waitFor();
  await page.getByText(`Signed in as ${user}`).waitFor();
  return {context, page, problems, url};
}

before(async () => {
  mkdirSync(shots, {recursive: true});
  console.log(`# console screenshots: ${shots}`);
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: tests/console/install.sh installs Debian's chromium`);
  const plugin = process.env.KUBECTL_SPACE || join(dirname(env.SERVER_BIN), 'kubectl-space');
  assert.ok(existsSync(plugin), `${plugin} is missing: cargo build --bin kubectl-space`);

  apply({
    apiVersion: 'config.tenancy.loft.sh/v1', kind: 'SpaceTemplate', metadata: {name: id},
    spec: {
      parameters: [{name: 'tier', description: 'Which stage the space is for', default: 'dev', validation: 'dev|prod'}],
      objects: [{apiVersion: 'v1', kind: 'ConfigMap', metadata: {name: 'stage'}, data: {tier: '${tier}'}}],
    },
  });
  apply({
    apiVersion: 'config.tenancy.loft.sh/v1', kind: 'Account', metadata: {name: id},
    spec: {subjects: [{kind: 'User', name: 'alice'}], space: {limit: 3, templates: [id]}},
  });
  apply({
    apiVersion: 'config.tenancy.loft.sh/v1', kind: 'AccountQuota', metadata: {name: id},
    spec: {account: id, quota: {hard: {pods: '4'}}},
  });
  // A connected cluster whose credentials are missing: Offline, and on the platform team's Clusters page.
  apply({
    apiVersion: 'config.tenancy.loft.sh/v1', kind: 'Cluster', metadata: {name: id},
    spec: {config: {secretRef: {name: `${id}-missing`}}},
  });

  // Alice through the plugin, with only her own kubeconfig (kubectl on PATH, as when kubectl runs the plugin).
  const path = `${dirname(env.KUBECTL)}:${process.env.PATH}`;
  const aliceUrl = await serve(plugin, ['console', '--no-browser', '--kubeconfig', env.KUBECONFIG_ALICE], {PATH: path});
  const adminUrl = await serve(env.KUBECTL, ['proxy', '--port=0', '--kubeconfig', env.KUBECONFIG_ADMIN]);
  browser = await chromium.launch({executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS});
  alice = await open('alice', aliceUrl);
  admin = await open('admin', adminUrl);
});

after(async () => {
  await browser?.close();
  for (const child of children) {
    child.kill('SIGTERM');
  }
  // Unshared first, so tenants stop seeing it at once, whatever the namespace's deletion takes.
  try {
    kubectl('admin', ['label', 'namespace', `${id}-shared`, 'tenancy.loft.sh/shared-']);
  } catch {
    // Not made: the test stopped before.
  }
  const ignore = ['--ignore-not-found', '--wait=false'];
  for (const [kind, name] of [
    ['spaces.tenancy.loft.sh', `${id}-web`],
    ['namespace', `${id}-granted`],
    ['namespace', `${id}-shared`],
    ['accountquotas.config.tenancy.loft.sh', id],
    ['accounts.config.tenancy.loft.sh', id],
    ['spacetemplates.config.tenancy.loft.sh', id],
    ['clusters.config.tenancy.loft.sh', id],
  ]) {
    try {
      kubectl('admin', ['delete', kind, name, ...ignore]);
    } catch (error) {
      console.log(`# cleanup: ${error.message}`);
    }
  }
});

test('alice sees exactly the spaces kubectl get spaces lists for her, and no platform pages', async () => {
  const {page} = alice;
  await sameAsKubectl(page, 'alice');
  for (const column of ['Name', 'Account', 'Cluster', 'Phase', 'Age']) {
    await page.getByRole('columnheader', {name: column, exact: true}).waitFor();
  }
  assert.equal(await page.getByRole('link', {name: 'All accounts'}).count(), 0);
  assert.equal(await page.getByRole('navigation', {name: 'Console'}).getByRole('link').count(), 3);
  await screenshot(page, 'alice-spaces');
});

test('a grant made in another terminal appears in alice\'s list without a reload, and its revocation removes it', async () => {
  const {page} = alice;
  const granted = `${id}-granted`;
  await page.evaluate(() => {
    window.sameDocument = true;
  });
  kubectl('admin', ['create', 'namespace', granted]);
  kubectl('admin', ['create', 'rolebinding', 'alice-view', '--clusterrole=view', '--user=alice', '-n', granted]);
  const row = page.getByRole('row', {name: new RegExp(`^${granted} `)});
  await row.waitFor({timeout: SETTLE});
  assert.equal(await page.evaluate(() => window.sameDocument), true, 'the page was not reloaded');
  await sameAsKubectl(page, 'alice');
  await screenshot(page, 'alice-live-grant');

  kubectl('admin', ['delete', 'rolebinding', 'alice-view', '-n', granted]);
  await row.waitFor({state: 'detached', timeout: SETTLE});
  assert.equal(await page.evaluate(() => window.sameDocument), true, 'the page was not reloaded');
});

test('creating a space shows the server\'s refusal of an invalid parameter, then creates it with a valid one', async () => {
  const {page} = alice;
  const name = `${id}-web`;
  const form = page.getByRole('form', {name: 'Create a space'});
  await form.getByLabel('Account').selectOption(id);
  const tier = form.getByLabel('tier');
  await tier.waitFor();
  assert.match(await form.getByText('Must match: dev|prod').textContent(), /Default: dev/);
  // This cluster comes first among the clusters offered (connected ones, which the accounts watch brings as the
  // server connects them, follow it).
  const options = form.getByLabel('Cluster').locator('option');
  await options.first().waitFor({state: 'attached', timeout: SETTLE});
  assert.deepEqual((await options.allTextContents()).slice(0, 1), ['This cluster']);
  await form.getByLabel('Name').fill(name);
  await tier.fill('huge');
  await form.getByRole('button', {name: 'Create space'}).click();

  // kubectl's words for the same request are the alert's words.
  const space = {apiVersion: 'tenancy.loft.sh/v1', kind: 'Space', metadata: {name},
    spec: {account: id, templateParameters: {tier: 'huge'}}};
  let said = '';
  try {
    kubectl('alice', ['create', '-f', '-', '--dry-run=server'], JSON.stringify(space));
  } catch (error) {
    said = error.stderr;
  }
  const cause = 'spec.templateParameters.tier: Invalid value: "huge": must match "dev|prod"';
  assert.ok(said.includes(cause), `kubectl said: ${said}`);
  const alertText = page.getByRole('alert');
  await alertText.getByText(cause).waitFor();
  assert.match(await alertText.textContent(), new RegExp(`Error from server \\(Invalid\\): Space.tenancy.loft.sh "${name}" is invalid`));
  assert.equal(await tier.getAttribute('aria-invalid'), 'true');
  assert.equal(await tier.evaluate((input) => document.activeElement === input), true, 'the refused field has the focus');
  await screenshot(page, 'alice-create-refused');

  await tier.fill('prod');
  await form.getByRole('button', {name: 'Create space'}).click();
  await page.getByRole('status').getByText(`space.tenancy.loft.sh/${name} created`).waitFor();
  await page.getByRole('row', {name: new RegExp(`^${name} ${id} `)}).waitFor();
  assert.equal(await page.getByRole('alert').getByText(cause).count(), 0, 'the refusal is gone once the create succeeds');
  const parameters = kubectl('alice', ['get', 'spaces.tenancy.loft.sh', name, '-o', 'jsonpath={.spec.templateParameters.tier}']);
  assert.equal(parameters, 'prod');
  await sameAsKubectl(page, 'alice');
  await screenshot(page, 'alice-created');
});

test('alice publishes a service of her space at its domain and sees its URL and its certificate become ready', async () => {
  const {page} = alice;
  const space = `${id}-web`;
  kubectl('alice', ['create', 'service', 'clusterip', 'shop', '--tcp=80:8080', '-n', space]);
  const form = page.getByRole('form', {name: 'Publish a service'});
  await form.getByLabel('Space').selectOption(space, {timeout: SETTLE});
  const host = `shop.${space}.${env.SPACE_DOMAIN}`;
  await page.getByRole('row', {name: new RegExp(`^${space} ${id} .* ${space}\\.${env.SPACE_DOMAIN.replaceAll('.', '\\.')} `)}).waitFor();
  await eventually(async () => {
    await form.getByRole('button', {name: 'Refresh'}).click();
    await form.getByLabel('Service').selectOption('shop', {timeout: 2_000});
  }, SETTLE);
  await form.getByRole('button', {name: 'Publish'}).click();
  await page.getByRole('status').getByText(`ingress.networking.k8s.io/shop exposed: https://${host}`).waitFor();
  assert.equal(kubectl('alice', ['get', 'ingress', 'shop', '-n', space, '-o', 'jsonpath={.spec.tls[0].hosts[0]}']), host);
  // cert-manager issues its certificate from the shared issuer; the list says so once it is Ready.
  await eventually(async () => {
    await form.getByRole('button', {name: 'Refresh'}).click();
    await form.getByRole('row', {name: `shop https://${host} Ready`}).waitFor({timeout: 2_000});
  }, 60_000);
  await form.getByRole('link', {name: `https://${host}`}).waitFor();
  // Publishing it again is kube-apiserver's refusal, in kubectl's words.
  await form.getByRole('button', {name: 'Publish'}).click();
  await page.getByRole('alert').getByText('Error from server (AlreadyExists)').waitFor();
  await screenshot(page, 'alice-published');
  await page.getByRole('alert').getByRole('button', {name: 'Dismiss'}).click();
});

test('alice\'s accounts show her space count against the limit and the quota\'s use', async () => {
  const {page} = alice;
  await page.getByRole('link', {name: 'My accounts'}).click();
  const heading = page.getByRole('heading', {name: 'My accounts', level: 1});
  await heading.waitFor();
  assert.equal(await heading.evaluate((h) => document.activeElement === h), true, 'navigation moves the focus to the page');
  const card = page.getByRole('article', {name: id});
  await card.getByText('Spaces: 1 of 3').waitFor({timeout: SETTLE});
  await card.getByRole('meter', {name: 'Spaces: 1 of 3'}).waitFor();
  await card.getByRole('meter', {name: /^pods: \d+ of 4$/}).waitFor({timeout: SETTLE});
  // Only her accounts: the same names as kubectl get accounts.
  const listed = kubectl('alice', ['get', 'accounts.tenancy.loft.sh', '-o', 'name'])
    .split('\n').filter(Boolean).map((l) => l.replace(/^account\.tenancy\.loft\.sh\//, '')).sort();
  const shown = (await page.getByRole('article').getByRole('heading', {level: 2}).allTextContents()).sort();
  assert.deepEqual(shown, listed);
  await screenshot(page, 'alice-accounts');
});

test('a space sleeps and wakes from its row, as kubectl space sleep and wake do', async () => {
  const {page} = alice;
  const name = `${id}-web`;
  await page.getByRole('link', {name: 'Spaces'}).click();
  await page.getByRole('button', {name: `Send to sleep space ${name}`}).click();
  await page.getByRole('status').getByText(`space.tenancy.loft.sh "${name}" sent to sleep`).waitFor();
  await page.getByRole('row', {name: new RegExp(`^${name} .* Sleeping `)}).waitFor({timeout: SETTLE});
  await eventually(() => assert.equal(
    kubectl('alice', ['get', 'spaces.tenancy.loft.sh', name, '-o', 'jsonpath={.status.phase}']), 'Sleeping'));
  await screenshot(page, 'alice-sleeping');
  await page.getByRole('button', {name: `Wake space ${name}`}).click();
  await page.getByRole('status').getByText(`space.tenancy.loft.sh "${name}" woken`).waitFor();
  await page.getByRole('row', {name: new RegExp(`^${name} .* Active `)}).waitFor({timeout: SETTLE});
  await sameAsKubectl(page, 'alice');
});

test('deleting asks first: Escape or Cancel keep the space, Delete removes it', async () => {
  const {page} = alice;
  const name = `${id}-web`;
  await page.getByRole('link', {name: 'Spaces'}).click();
  const button = page.getByRole('button', {name: `Delete space ${name}`});
  // With the keyboard only: Enter opens the dialog with Cancel focused, Escape closes it, the focus comes back.
  await button.focus();
  await page.keyboard.press('Enter');
  const dialog = page.getByRole('dialog', {name: `Delete space ${name}?`});
  await dialog.waitFor();
  assert.equal(await dialog.getByRole('button', {name: 'Cancel'}).evaluate((b) => document.activeElement === b), true);
  await screenshot(page, 'alice-delete-dialog');
  await page.keyboard.press('Escape');
  await dialog.waitFor({state: 'hidden'});
  assert.equal(await button.evaluate((b) => document.activeElement === b), true, 'the focus is back on the button');
  await button.click();
  await dialog.getByRole('button', {name: 'Cancel'}).click();
  await dialog.waitFor({state: 'hidden'});
  kubectl('alice', ['get', 'spaces.tenancy.loft.sh', name]);

  await button.click();
  await dialog.getByRole('button', {name: 'Delete'}).click();
  await page.getByRole('status').getByText(`space.tenancy.loft.sh "${name}" deleted`).waitFor();
  await page.getByRole('row', {name: new RegExp(`^${name} `)}).waitFor({state: 'detached', timeout: 60_000});
  await eventually(() => assert.ok(!kubectlSpaces('alice').includes(name)), 60_000);
  await sameAsKubectl(page, 'alice');
});

test('shared services show their DNS names and ports to every tenant', async () => {
  const {page} = alice;
  const shared = `${id}-shared`;
  kubectl('admin', ['create', 'namespace', shared]);
  kubectl('admin', ['create', 'service', 'clusterip', 'api', '--tcp=8080:80', '-n', shared]);
  kubectl('admin', ['label', 'namespace', shared, 'tenancy.loft.sh/shared=true']);
  await page.getByRole('link', {name: 'Shared services'}).click();
  const table = page.getByRole('table', {name: `Services of ${shared}`});
  await table.waitFor({timeout: SETTLE});
  await table.getByRole('cell', {name: `api.${shared}.svc.cluster.local`}).waitFor();
  await table.getByRole('cell', {name: '8080-80 8080/TCP → 80'}).waitFor();
  await screenshot(page, 'alice-shared-services');
});

test('what alice may not read is the server\'s own refusal in an alert, never a blank page', async () => {
  const {page} = alice;
  await page.goto(`${alice.url}#platform-accounts`);
  await page.getByRole('heading', {name: 'All accounts', level: 1}).waitFor();
  await page.getByRole('alert').getByText(
    'Error from server (Forbidden): accounts.config.tenancy.loft.sh is forbidden: User "alice" cannot list resource ' +
    '"accounts" in API group "config.tenancy.loft.sh" at the cluster scope').waitFor();
  await screenshot(page, 'alice-forbidden');
  await page.goto(`${alice.url}#spaces`);
  await sameAsKubectl(page, 'alice');
});

test('on a narrow window the console fits its width, and its URL works without the trailing slash', async () => {
  const narrow = await open('alice', alice.url.replace(/\/$/, ''), {width: 375, height: 812});
  assert.match(narrow.page.url(), /\/apis\/tenancy\.loft\.sh\/v1\/console\/$/);
  await sameAsKubectl(narrow.page, 'alice');
  const overflow = await narrow.page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page is ${overflow}px wider than the window`);
  await screenshot(narrow.page, 'alice-narrow');
  await narrow.context.close();
});

test('the platform team sees every account with its usage, the templates and the clusters', async () => {
  const {page} = admin;
  await page.getByRole('link', {name: 'All accounts'}).click();
  const card = page.getByRole('article', {name: id});
  await card.waitFor({timeout: SETTLE});
  await card.getByRole('meter', {name: /^Spaces: \d+ of 3$/}).waitFor();
  await card.getByRole('meter', {name: /^pods: \d+ of 4$/}).waitFor();
  await card.getByText('User alice').waitFor();
  await screenshot(page, 'admin-accounts');

  await page.getByRole('link', {name: 'Templates'}).click();
  const parameters = page.getByRole('table', {name: `Parameters of ${id}`});
  await parameters.getByRole('row', {name: 'tier dev no dev|prod Which stage the space is for'}).waitFor({timeout: SETTLE});
  await page.getByRole('article', {name: id}).getByText('ConfigMap/stage').waitFor();
  await screenshot(page, 'admin-templates');

  await page.getByRole('link', {name: 'Clusters'}).click();
  // The clusters page's own button, once it is the page shown (another page's Refresh may still be on screen).
  const clustersPage = page.locator('#page-clusters');
  await clustersPage.getByRole('heading', {name: 'Clusters', level: 1}).waitFor({timeout: SETTLE});
  const clusters = page.getByRole('table', {name: 'Connected clusters'});
  await eventually(async () => {
    await clustersPage.getByRole('button', {name: 'Refresh'}).click({timeout: 2000});
    await clusters.getByRole('row', {name: new RegExp(`^${id} +Offline `)}).waitFor({timeout: 1000});
  });
  await screenshot(page, 'admin-clusters');

  // Connecting a cluster from here: a kubeconfig that does not parse is refused at its field, in words, nothing made.
  const connect = page.getByRole('form', {name: 'Connect a cluster'});
  await connect.getByLabel('Name', {exact: true}).fill(`${id}-new`);
  await connect.getByLabel('Admin kubeconfig').fill('this is: [not a kubeconfig');
  await connect.getByRole('button', {name: 'Connect cluster'}).click();
  await page.locator('#connect-kubeconfig-error').filter({hasText: 'the kubeconfig does not parse'}).waitFor({timeout: SETTLE});
  assert.equal(await connect.getByLabel('Admin kubeconfig').getAttribute('aria-invalid'), 'true');
  await screenshot(page, 'admin-connect-refused');
  assert.ok(!kubectl('admin', ['get', 'clusters.config.tenancy.loft.sh', '-o', 'name']).includes(`${id}-new`));

  for (const session of [alice, admin]) {
    assert.deepEqual(session.problems, [], 'no script errors in the page');
  }
});
