// The Spaces page's table: the caller's spaces with the columns of `kubectl get spaces` (name, account, cluster, phase,
// age; and the domain of `-o wide`), updated in place from the watch, and deleting one after a confirmation dialog.

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
    let button = actions.querySelector('button');
    if (!button) {
      button = h('button', {type: 'button', class: 'danger quiet', 'aria-label': `Delete space ${spaceName}`,
        onclick: () => confirmDelete(spaceName)}, 'Delete');
      actions.append(button);
    }
    button.disabled = terminating;
  });
}

const dialog = document.getElementById('confirm-delete');
let pending = '';

for (const button of dialog.querySelectorAll('button')) {
  button.addEventListener('click', () => dialog.close(button.value));
}

dialog.addEventListener('close', async () => {
  const name = pending;
  pending = '';
  const row = document.querySelector(`#spaces-table tr[data-key="${CSS.escape(name)}"] button`);
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
