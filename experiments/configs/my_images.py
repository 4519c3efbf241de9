"""Fine-tune torchvision's ResNet-18 on a folder of your own images (one sub-folder per class).

    python -m experiments.classify --workdir=runs/my_images \
        --config=experiments/configs/my_images.py --config.data_dir=/path/to/images \
        --config.init_from=resnet18-f37072fd.pth
    python -m experiments.classify --workdir=runs/my_images --mode=eval
    python -m experiments.classify --workdir=runs/my_images --mode=predict --input=new_images/
    python -m experiments.classify --workdir=runs/my_images --mode=export --format=stablehlo,onnx

The folder: `DIR/<class>/*.png|jpg|bmp|tif` (val and test held out, 10% of each class each)
or `DIR/{train,val,test}/<class>/*` (see `cnnjax.data.image_folder`). Images are converted
to RGB and resized to `dataset_options.image_size` (64 here: fast on a CPU; 224 is what the
ImageNet weights saw). The head is new (one output per class folder); the backbone learns at
a tenth of the head's rate and keeps its batch-norm statistics (small batches).
Result: none stated; it depends on your images. The slow test
`tests/experiments/test_own_images_e2e.py` runs these commands on 300 generated PNGs.
"""

import ml_collections

from cnnjax.train.runner.config import default_config


def get_config() -> ml_collections.ConfigDict:
    c = default_config()
    c.dataset = "image_folder"
    c.dataset_options = ml_collections.ConfigDict({"image_size": 64, "channels": 3})
    c.model = "resnet18"
    c.batch_size = 32
    c.num_epochs = 10
    c.augment = "hflip"
    c.optimizer.name = "adamw"
    c.optimizer.learning_rate = 1e-3
    c.optimizer.weight_decay = 1e-4
    c.optimizer.lr_multipliers = (("head/*", 1.0), ("*", 0.1))
    c.freeze_batch_stats = ("*",)
    c.schedule.name = "warmup_cosine"
    c.schedule.warmup_steps = 20
    c.log_every_steps = 10
    return c
