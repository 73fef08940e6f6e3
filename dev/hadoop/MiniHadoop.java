// Starts a real HDFS (NameNode + DataNodes) and, optionally, a real YARN (ResourceManager +
// NodeManagers) on loopback from Apache Hadoop's own minicluster (hadoop-client-minicluster,
// Maven Central), then writes core-site.xml / hdfs-site.xml / yarn-site.xml for clients
// (HADOOP_CONF_DIR) and "READY" to the state file, and runs until it is killed.
//
// Run as a single-file source program (no build step):
//   java -cp "<pyspark jars>/*:<minicluster jars>/*" MiniHadoop.java --base DIR --conf-dir DIR \
//        --nn-port 19000 --nn-http-port 19870 [--datanodes 1] [--yarn --nodemanagers 2 --nm-memory-mb 6144]
// lakeloop_dev.hadoop drives it (./dev/services.sh start hadoop).
import java.io.File;
import java.io.FileOutputStream;
import java.io.OutputStream;
import java.nio.file.Files;
import java.nio.file.StandardCopyOption;
import java.util.HashMap;
import java.util.Map;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.hdfs.HdfsConfiguration;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.yarn.conf.YarnConfiguration;
import org.apache.hadoop.yarn.server.MiniYARNCluster;

public class MiniHadoop {
    public static void main(String[] argv) {
        try {
            run(argv);
        } catch (Throwable e) {
            // Hadoop's service threads are not daemons: without exit, a failed start would hang.
            e.printStackTrace();
            System.exit(1);
        }
    }

    private static void run(String[] argv) throws Exception {
        Map<String, String> opts = new HashMap<>();
        for (int i = 0; i < argv.length; i++) {
            String key = argv[i];
            if (!key.startsWith("--")) throw new IllegalArgumentException("unexpected argument " + key);
            if (key.equals("--yarn")) { opts.put("yarn", "true"); continue; }
            if (i + 1 >= argv.length) throw new IllegalArgumentException(key + " needs a value");
            opts.put(key.substring(2), argv[++i]);
        }
        File base = new File(require(opts, "base"));
        File confDir = new File(require(opts, "conf-dir"));
        int nnPort = Integer.parseInt(require(opts, "nn-port"));
        int nnHttpPort = Integer.parseInt(require(opts, "nn-http-port"));
        int datanodes = Integer.parseInt(opts.getOrDefault("datanodes", "1"));
        File ready = new File(confDir, "READY");
        ready.delete();
        confDir.mkdirs();

        Configuration conf = new HdfsConfiguration();
        // Loopback only; one replica is all a single DataNode can hold.
        conf.set("dfs.namenode.rpc-bind-host", "127.0.0.1");
        conf.set("dfs.namenode.http-bind-host", "127.0.0.1");
        conf.set("dfs.datanode.hostname", "127.0.0.1");
        conf.setInt("dfs.replication", 1);
        conf.setBoolean("dfs.permissions.enabled", false);
        conf.setBoolean("dfs.webhdfs.enabled", true);
        // WebHDFS writes go through a client inside the DataNode: let it ask after 20 ms, not
        // 400, whether a closed file's last block is reported (small files, see hdfs-test.yaml).
        conf.setInt("dfs.client.block.write.locateFollowingBlock.initial.delay.ms", 20);
        // Reformat only a fresh base folder: a restarted service keeps its files.
        boolean fresh = !new File(base, "data").exists();
        MiniDFSCluster dfs = new MiniDFSCluster.Builder(conf, base)
                .nameNodePort(nnPort)
                .nameNodeHttpPort(nnHttpPort)
                .numDataNodes(datanodes)
                .checkDataNodeHostConfig(true)
                .format(fresh)
                .build();
        dfs.waitActive();
        String defaultFs = "hdfs://127.0.0.1:" + dfs.getNameNodePort();

        Configuration client = new Configuration(false);
        client.set("fs.defaultFS", defaultFs);
        client.set("dfs.replication", "1");
        client.set("dfs.namenode.http-address", "127.0.0.1:" + dfs.getNameNode().getHttpAddress().getPort());
        writeAtomically(client, new File(confDir, "core-site.xml"));
        Configuration hdfsSite = new Configuration(false);
        hdfsSite.set("dfs.replication", "1");
        hdfsSite.set("dfs.namenode.http-address", "127.0.0.1:" + dfs.getNameNode().getHttpAddress().getPort());
        writeAtomically(hdfsSite, new File(confDir, "hdfs-site.xml"));

        MiniYARNCluster yarn = null;
        if (opts.containsKey("yarn")) {
            YarnConfiguration yconf = new YarnConfiguration(dfs.getConfiguration(0));
            yconf.set("fs.defaultFS", defaultFs);
            int nmMemory = Integer.parseInt(opts.getOrDefault("nm-memory-mb", "6144"));
            yconf.setInt("yarn.nodemanager.resource.memory-mb", nmMemory);
            yconf.setInt("yarn.nodemanager.resource.cpu-vcores", Integer.parseInt(opts.getOrDefault("nm-vcores", "4")));
            yconf.setInt("yarn.scheduler.minimum-allocation-mb", 128);
            yconf.setInt("yarn.scheduler.maximum-allocation-mb", nmMemory);
            // Python workers and torchrun count against a container's memory; the checks are
            // for shared production clusters, not a loopback test.
            yconf.setBoolean("yarn.nodemanager.pmem-check-enabled", false);
            yconf.setBoolean("yarn.nodemanager.vmem-check-enabled", false);
            yconf.set("yarn.nodemanager.disk-health-checker.max-disk-utilization-per-disk-percentage", "99.0");
            yconf.set("yarn.resourcemanager.hostname", "127.0.0.1");
            // The capacity scheduler wants a capacity-scheduler.xml; one FIFO queue is enough here.
            yconf.set("yarn.resourcemanager.scheduler.class",
                    "org.apache.hadoop.yarn.server.resourcemanager.scheduler.fifo.FifoScheduler");
            yconf.set("yarn.nodemanager.hostname", "127.0.0.1");
            if (opts.containsKey("rm-port")) {
                yconf.set("yarn.resourcemanager.address", "127.0.0.1:" + opts.get("rm-port"));
            }
            int nodes = Integer.parseInt(opts.getOrDefault("nodemanagers", "1"));
            yarn = new MiniYARNCluster("lakeloop", nodes, 1, 1);
            yarn.init(yconf);
            yarn.start();
            Configuration started = yarn.getConfig();
            // The ResourceManager's port is known only once it is up.
            long deadline = System.currentTimeMillis() + 60_000;
            while (started.get("yarn.resourcemanager.address", "").endsWith(":0")) {
                if (System.currentTimeMillis() > deadline) throw new IllegalStateException("YARN did not start");
                Thread.sleep(200);
            }
            // Clients need the ResourceManager's addresses only: the full configuration would
            // carry the minicluster's test-only classes (its StaticMapping rack resolver).
            Configuration yarnSite = new Configuration(false);
            for (Map.Entry<String, String> entry : started) {
                String key = entry.getKey();
                if (key.startsWith("yarn.resourcemanager.") && (key.endsWith(".address") || key.endsWith(".hostname"))) {
                    yarnSite.set(key, started.get(key));
                }
            }
            writeAtomically(yarnSite, new File(confDir, "yarn-site.xml"));
        }

        Files.writeString(ready.toPath(), defaultFs + "\n");
        System.out.println("READY " + defaultFs);
        final MiniYARNCluster yarnRef = yarn;
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            if (yarnRef != null) yarnRef.stop();
            dfs.shutdown();
            ready.delete();
        }));
        Thread.currentThread().join();
    }

    private static String require(Map<String, String> opts, String key) {
        String value = opts.get(key);
        if (value == null) throw new IllegalArgumentException("missing --" + key);
        return value;
    }

    private static void writeAtomically(Configuration conf, File target) throws Exception {
        File tmp = new File(target.getParentFile(), "." + target.getName() + ".tmp");
        try (OutputStream out = new FileOutputStream(tmp)) {
            conf.writeXml(out);
        }
        Files.move(tmp.toPath(), target.toPath(), StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
}
