"""How each part of the rack is built: one subpackage per layer (`core` is the shared machinery
the others stand on), one ComponentResource per module.
"""

import sys

from components.core import generated_secret

# The stack state refers to GeneratedSecret's dynamic provider by its module path from before the
# layers split (`generated_secret.LEGACY_MODULE`, pickled by reference): that path, as an import
# and as this package's attribute, is the module in `core`.
sys.modules.setdefault(generated_secret.LEGACY_MODULE, generated_secret)
