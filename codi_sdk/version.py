"""Version of the SDK and of the plugin API it offers."""

__version__ = "0.1.0"

#: The plugin API version. A plugin's ``codi_api_version`` hook must return a version this SDK
#: accepts (see :data:`SUPPORTED_API_VERSIONS`); any other is refused by the registry.
API_VERSION = 1
SUPPORTED_API_VERSIONS = frozenset({1})
