// Each route takes its own credential: the admin's for /admin, the payment
// backend's for confirm, none for buyers (FLASHSALE_BUYER_AUTH=none).
const path = '/' + pm.request.url.getPath().replace(/^\/+/, '');
let token = '';
if (path.startsWith('/admin/v1/')) token = pm.variables.get('adminToken');
else if (path.endsWith('/confirm')) token = pm.variables.get('serviceToken');
pm.variables.set('bearerToken', token);
