"""Pure-functional flax.linen models, one file per family, looked up by name.

Every model is applied as ``model.apply(variables, x, train=bool, rngs=...) -> (output, aux_dict)``.
"""

from echojax.models.registry import get_model, list_models, register

# The registry builds every name of the architecture table (echoforge.archs) lazily; importing the families here
# keeps `import echojax.models` a full import, as before.
from echojax.models import resnet  # noqa: F401,E402
from echojax.models import video_resnet  # noqa: F401,E402
from echojax.models import echosdnet  # noqa: F401,E402
from echojax.models import efficientnet  # noqa: F401,E402
from echojax.models import vit  # noqa: F401,E402
from echojax.models import video_vit  # noqa: F401,E402
from echojax.models import temporal  # noqa: F401,E402
from echojax.models import spatiotemporal  # noqa: F401,E402

__all__ = ["get_model", "list_models", "register"]
