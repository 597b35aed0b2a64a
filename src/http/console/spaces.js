// The Spaces page's table: the caller's spaces with the columns of `kubectl get spaces` (name, account, cluster, phase,
// age; and the domain of `-o wide`), updated in place from the watch; sending one to sleep or waking it (phase
// Sleeping), and deleting one after a confirmation dialog.

import {request, SPACES} from './api.js';
import {alert, announce, clearAlert, h, keyedTable, setAge} from './ui.js';

const COLUMNS = ['Name', 'Account', 'Cluster', 'Phase', 'Domain', 'Age', 'Actions'];
const update = keyedTable(document.querySelector('#spaces-table tbody'), COLUMNS, 'No resources found');

/// Shows `items` (name -> Space), as the watch keeps them.
export function render(items) {
  document.querySelector('#spaces-table tbody tr.empty:not([data-key])')?.remove();
  update(items, (space, [name, account, cluster, phase, domain, since, actions]) => {
    const spaceName = space.metadata.name;
    name.textContent = spaceName;
    account.textContent = space.spec?.account || '<none>';
    cluster.textContent = space.spec?.cluster || 'this cluster';
    const terminating = space.status?.phase === 'Terminating' || Boolean(space.metadata.deletionTimestamp);
    phase.textContent = space.status?.phase || '';
    domain.textContent = space.status?.domain || '';
    setAge(since, space.metadata.creationTimestamp);
    const sleeping = space.status?.sleep?.sleeping === true;
    let rest = actions.querySelector('button.sleep');
    if (!rest) {
      rest = h('button', {type: 'button', class: 'sleep quiet', onclick: () => sleepOrWake(spaceName, rest)});
      actions.append(rest);
    }
    rest.textContent = sleeping ? 'Wake' : 'Sleep';
    rest.dataset.action = sleeping ? 'wake' : 'sleep';
    rest.setAttribute('aria-label', `${sleeping ? 'Wake' : 'Send to sleep'} space ${spaceName}`);
    rest.disabled = terminating;
    let button = actions.querySelector('button.danger');
    if (!button) {
      button = h('button', {type: 'button', class: 'danger quiet', 'aria-label': `Delete space ${spaceName}`,
        onclick: () => confirmDelete(spaceName)}, 'Delete');
      actions.append(button);
    }
    button.disabled = terminating;
  });
}

/// Sends a space to sleep, or wakes it (its `sleep` and `wake` subresources, as `kubectl space sleep|wake` does); the
/// watch then shows its new phase.
async function sleepOrWake(name, button) {
  const action = button.dataset.action;
  button.disabled = true;
  try {
    await request('POST', `${SPACES}/${encodeURIComponent(name)}/${action}`, {});
    clearAlert('sleep');
    announce(`space.tenancy.loft.sh "${name}" ${action === 'wake' ? 'woken' : 'sent to sleep'}`);
  } catch (error) {
    alert('sleep', error);
  } finally {
    button.disabled = false;
    button.focus();
  }
}

const dialog = document.getElementById('confirm-delete');
let pending = '';

for (const button of dialog.querySelectorAll('button')) {
  button.addEventListener('click', () => dialog.close(button.value));
}

dialog.addEventListener('close', async () => {
  const name = pending;
  pending = '';
  const row = document.querySelector(`#spaces-table tr[data-key="${CSS.escape(name)}"] button.danger`);
  if (dialog.returnValue !== 'delete' || !name) {
    row?.focus();
    return;
  }
  try {
    await request('DELETE', `${SPACES}/${encodeURIComponent(name)}`);
    clearAlert('delete');
    announce(`space.tenancy.loft.sh "${name}" deleted`);
  } catch (error) {
    alert('delete', error);
  }
  // The row's button (disabled while it terminates) or, once the row is gone, the table.
  (row && row.isConnected && !row.disabled ? row : document.getElementById('h-spaces')).focus();
});

/// Asks before deleting `name`: the dialog is modal, Cancel has the focus, Escape cancels.
function confirmDelete(name) {
  pending = name;
  dialog.returnValue = '';
  dialog.querySelector('.name').textContent = name;
  dialog.showModal();
}
