// Cancel needs a pending hold of its own (the reserve request's is confirmed).
pm.sendRequest({
  url: pm.variables.get('baseUrl') + '/v1/items/mug/reservations',
  method: 'POST',
  header: { 'Content-Type': 'application/json' },
  body: { mode: 'raw', raw: JSON.stringify({ user_id: 'newman-cancel', quantity: 1 }) },
}, (err, res) => {
  if (err || res.code !== 201) throw new Error('a hold to cancel: ' + (err || res.code));
  pm.collectionVariables.set('cancelId', res.json().id);
});
