"""Write docs/_intersphinx/photutils.inv from the installed photutils' public API.

photutils' own objects.inv cannot be fetched where the documentation is built
(no network), so this writes one with the layout of its documentation:
sphinx-automodapi gives each public class and function of a subpackage a page
``api/photutils.<sub>.<Name>.html``, and each subpackage's API is listed on
``reference/<sub>_api.html``.  Run it again after upgrading photutils::

    .venv/bin/python scripts/photutils_inventory.py docs/_intersphinx/photutils.inv
"""

import importlib
import inspect
import pkgutil
import sys
import warnings

import photutils
import sphobjinv as soi

warnings.simplefilter("ignore")
inv = soi.Inventory()
inv.project = "photutils"
inv.version = photutils.__version__.rsplit(".", 1)[0]
for mod in pkgutil.iter_modules(photutils.__path__, "photutils."):
    name = mod.name
    if not mod.ispkg or name.rsplit(".", 1)[1].startswith("_") or name.endswith(".tests"):
        continue
    m = importlib.import_module(name)
    if "deprecated" in (m.__doc__ or "").lower():
        continue
    inv.objects.append(soi.DataObjStr(name=name, domain="py", role="module", priority="1",
                                      uri=f"reference/{name.rsplit('.', 1)[1]}_api.html#module-$",
                                      dispname="-"))
    for attr in sorted(getattr(m, "__all__", None) or dir(m)):
        if attr.startswith("_"):
            continue
        obj = getattr(m, attr)
        if not getattr(obj, "__module__", "").startswith("photutils"):
            continue
        role = "class" if inspect.isclass(obj) else "function" if inspect.isfunction(obj) else None
        if role:
            inv.objects.append(soi.DataObjStr(name=f"{name}.{attr}", domain="py", role=role,
                                              priority="1", uri=f"api/{name}.{attr}.html#$",
                                              dispname="-"))
print(len(inv.objects), file=sys.stderr)
soi.writebytes(sys.argv[1], soi.compress(inv.data_file(contract=True)))
