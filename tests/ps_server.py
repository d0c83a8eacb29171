"""A worker or parameter server: a TensorFlow server that runs until killed.

Start one per task, with TF_CONFIG naming the task (docs/distributed.rst
shows this file).
"""

import tensorflow as tf

resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
server = tf.distribute.Server(
    resolver.cluster_spec(),
    job_name=resolver.task_type,
    task_index=resolver.task_id,
    protocol="grpc",
    start=True,
)
server.join()
