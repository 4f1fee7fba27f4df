// What `require('taskwire')` resolves to (the "require" condition of package.json's "exports"). taskwire is
// ES modules only; this says so, instead of Node's ERR_PACKAGE_PATH_NOT_EXPORTED.
'use strict';

const error = new Error("taskwire is an ES module: use import or await import('taskwire')");
error.code = 'ERR_REQUIRE_ESM';
throw error;
